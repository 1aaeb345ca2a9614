//! [`AuthError`]: why a request was not let through, and the answer it gets.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::http::Problem;

/// Why a request's token was not accepted, or its caller not allowed.
///
/// The variants are for logs and tests; the response says as little as RFC 6750 allows. Every token problem
/// answers the same 401 with `WWW-Authenticate: Bearer error="invalid_token"`, so that an attacker learns
/// nothing about which check failed; the log line names it (never with the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("no bearer token")]
    Missing,
    /// More than one `Authorization` header, or a scheme other than `Bearer`.
    #[error("the Authorization header is not one bearer token")]
    NotBearer,
    /// The token is longer than [`MAX_TOKEN_BYTES`](super::MAX_TOKEN_BYTES).
    #[error("the token is too large")]
    TooLarge,
    /// The token is not a JWT: not three base64url parts, or a header or payload that is not JSON.
    #[error("the token is malformed")]
    Malformed,
    /// The header names an algorithm other than RS256, PS256 or ES256 (`none`, HMAC, ...).
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    /// The header names no `kid`, or one the issuer does not publish (after a refetch).
    #[error("the token's signing key is unknown")]
    UnknownKey,
    /// The signature does not verify with the named key, or the key is of another type than the algorithm.
    #[error("the token's signature is invalid")]
    Signature,
    /// `exp` is past, beyond the leeway.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future, beyond the leeway.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iss` is not one of `AUTH_ISSUER`.
    #[error("the token's issuer is not accepted")]
    Issuer,
    /// `aud` does not name `AUTH_AUDIENCE`.
    #[error("the token's audience is not accepted")]
    Audience,
    /// A required claim (`exp`, `iss`, `aud`) is missing or has the wrong type, or a context element is not an
    /// absolute FHIR reference.
    #[error("the token's claims are invalid ({0})")]
    Claims(&'static str),
    /// No key set was ever loaded (the issuer has been unreachable since startup): the token cannot be checked.
    /// Answered 503: the failure is this side's, not the caller's.
    #[error("the issuer's keys are not available")]
    KeysUnavailable,
    /// The caller lacks the privilege the route requires. Answered 403, naming it.
    #[error("the privilege {0} is required")]
    MissingPrivilege(String),
    /// The caller's token has no context element the route requires. Answered 403, naming it.
    #[error("a token with context.{0} is required")]
    MissingContext(&'static str),
    /// The route extracts a [`Caller`](super::Caller) but neither [`Service::auth`](crate::Service::auth) nor an
    /// [`AuthLayer`](super::AuthLayer) is in front of it:
    /// a wiring mistake, answered 500 so that it cannot pass unnoticed as an open route.
    #[error("the route needs Service::auth or an AuthLayer in front of it")]
    NotConfigured,
}

impl AuthError {
    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingPrivilege(_) | Self::MissingContext(_) => StatusCode::FORBIDDEN,
            Self::KeysUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotConfigured => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (problem, challenge) = match &self {
            Self::MissingPrivilege(_) | Self::MissingContext(_) => (
                Problem::new(status).detail(self.to_string()),
                Some(r#"Bearer error="insufficient_scope""#),
            ),
            Self::KeysUnavailable => (
                Problem::new(status).detail("the access token cannot be verified now"),
                None,
            ),
            Self::NotConfigured => (Problem::new(status), None),
            _ => (
                Problem::new(status).detail("a valid access token is required"),
                Some(r#"Bearer error="invalid_token""#),
            ),
        };
        let mut response = problem.into_response();
        if let Some(challenge) = challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}
