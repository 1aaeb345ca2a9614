//! [`AuthLayer`] (the verifier on the request), [`RequirePrivilegeLayer`] (a route's requirement), and the
//! [`Caller`] extractor.

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use http::request::Parts;
use tokio::task::futures::TaskLocalFuture;
use tower::{Layer, Service};

use super::caller::{Caller, ContextElement};
use super::error::AuthError;
use super::verifier::Auth;

/// Makes an [`Auth`] current for every request it wraps, for the [`Caller`] extractor and
/// [`RequirePrivilegeLayer`]. It verifies nothing by itself: routes opt in by extracting a [`Caller`] or
/// requiring a privilege, so that probes and `/metrics` never need a token.
///
/// The verifier is current for the request's future (a task-local), like the kit's
/// [`ShutdownToken`](crate::shutdown::ShutdownToken), rather than a request extension, which would cost each
/// request an allocation. [`Service::auth`](crate::Service::auth) puts this layer into the kit's server stack.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    auth: Auth,
}

impl AuthLayer {
    /// A layer carrying `auth`.
    pub fn new(auth: Auth) -> Self {
        Self { auth }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// The service of [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Auth,
}

impl<S, B> Service<http::Request<B>> for AuthService<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TaskLocalFuture<Auth, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        CURRENT.scope(self.auth.clone(), self.inner.call(request))
    }
}

tokio::task_local! {
    static CURRENT: Auth;
}

/// Requires a verified token with a privilege (and optionally a context element) on the routes it wraps:
/// 401 without a valid token, 403 problem+json naming what is missing. Needs
/// [`Service::auth`](crate::Service::auth) or an [`AuthLayer`] outside it.
///
/// Use it as a `route_layer`, so that a path that matches no route still answers 404.
///
/// # Example
///
/// ```
/// use axum::{Router, routing::put};
/// use telemed_kit::auth::{Caller, ContextElement, RequirePrivilegeLayer};
///
/// async fn update(caller: Caller) -> String {
///     format!("updated for {:?}", caller.context.organization)
/// }
///
/// let routes: Router = Router::new()
///     .route("/plans/{id}", put(update))
///     .route_layer(
///         RequirePrivilegeLayer::new("CarePlan.write").with_context(ContextElement::Organization),
///     );
/// ```
#[derive(Debug, Clone)]
pub struct RequirePrivilegeLayer {
    requirement: Arc<Requirement>,
}

#[derive(Debug)]
struct Requirement {
    privilege: Cow<'static, str>,
    context: Vec<ContextElement>,
}

impl RequirePrivilegeLayer {
    /// Requires `privilege` (a role of `realm_access.roles`, such as `Patient.write`).
    pub fn new(privilege: impl Into<Cow<'static, str>>) -> Self {
        Self {
            requirement: Arc::new(Requirement {
                privilege: privilege.into(),
                context: Vec::new(),
            }),
        }
    }

    /// Also requires the token's context to name `element`.
    #[must_use]
    pub fn with_context(mut self, element: ContextElement) -> Self {
        if let Some(requirement) = Arc::get_mut(&mut self.requirement) {
            requirement.context.push(element);
        }
        self
    }
}

impl<S> Layer<S> for RequirePrivilegeLayer {
    type Service = RequirePrivilege<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequirePrivilege {
            inner,
            requirement: Arc::clone(&self.requirement),
        }
    }
}

/// The service of [`RequirePrivilegeLayer`].
#[derive(Debug, Clone)]
pub struct RequirePrivilege<S> {
    inner: S,
    requirement: Arc<Requirement>,
}

impl<S> Service<Request> for RequirePrivilege<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The clone that was polled ready serves this request; the fresh clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let requirement = Arc::clone(&self.requirement);
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let caller = match verified(&parts).await {
                Ok(caller) => caller,
                Err(error) => return Ok(refuse(error)),
            };
            if !caller.has_privilege(&requirement.privilege) {
                return Ok(refuse(AuthError::MissingPrivilege(
                    requirement.privilege.to_string(),
                )));
            }
            if let Some(missing) = requirement
                .context
                .iter()
                .find(|element| caller.context.get(**element).is_none())
            {
                return Ok(refuse(AuthError::MissingContext(missing.claim())));
            }
            // For the handler's extractor: verified once per request.
            parts.extensions.insert(caller);
            inner.call(Request::from_parts(parts, body)).await
        })
    }
}

/// The request's caller: the one [`RequirePrivilegeLayer`] verified, or verified now.
async fn verified(parts: &Parts) -> Result<Caller, AuthError> {
    if let Some(caller) = parts.extensions.get::<Caller>() {
        return Ok(caller.clone());
    }
    let auth = CURRENT
        .try_with(Auth::clone)
        .map_err(|_| AuthError::NotConfigured)?;
    auth.verify_headers(&parts.headers).await
}

/// The rejection's response, after one log line naming the reason (never the token).
fn refuse(error: AuthError) -> Response {
    match &error {
        AuthError::NotConfigured => {
            tracing::error!(r#type = "alarm", reason = %error, "auth: a route extracts Caller without an AuthLayer")
        }
        AuthError::KeysUnavailable => {
            crate::alert!(reason = %error, "auth: request refused, the token cannot be verified now")
        }
        _ => {
            crate::alert!(status = error.status().as_u16(), reason = %error, "auth: request refused")
        }
    }
    error.into_response()
}

/// A rejection of the [`Caller`] extractor: the [`AuthError`], logged once, answered as its response.
#[derive(Debug)]
pub struct AuthRejection(pub AuthError);

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        refuse(self.0)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        verified(parts).await.map_err(AuthRejection)
    }
}
