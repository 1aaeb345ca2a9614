//! [`ShutdownLayer`]: the in-flight count, `Connection: close` once shutdown started, the current token.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, Version, header};
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tower::{Layer, Service};

use super::state::{Inner, Shutdown};
use super::token::{CURRENT, ShutdownToken};

/// Applies [`ShutdownService`]; built by [`Shutdown::layer`].
#[derive(Debug, Clone)]
pub struct ShutdownLayer {
    shutdown: Shutdown,
}

impl Shutdown {
    /// The middleware that counts in-flight requests, adds `Connection: close` after the signal, and makes the
    /// [`ShutdownToken`] extractor work in the handlers it wraps.
    pub fn layer(&self) -> ShutdownLayer {
        ShutdownLayer {
            shutdown: self.clone(),
        }
    }
}

impl<S> Layer<S> for ShutdownLayer {
    type Service = ShutdownService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ShutdownService {
            inner,
            shutdown: self.shutdown.clone(),
        }
    }
}

/// Counts the request as in flight until its response is ready, and asks HTTP/1.1 clients to reconnect
/// elsewhere once shutdown has started.
#[derive(Debug, Clone)]
pub struct ShutdownService<S> {
    inner: S,
    shutdown: Shutdown,
}

impl<S, B, ResBody> Service<Request<B>> for ShutdownService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ShutdownFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let inner = &self.shutdown.inner;
        inner.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlightGuard(Arc::clone(inner));
        let http1 = request.version() <= Version::HTTP_11;
        ShutdownFuture {
            inner: CURRENT.scope(
                ShutdownToken::new(Arc::clone(inner)),
                self.inner.call(request),
            ),
            guard: Some(guard),
            http1,
        }
    }
}

// Decrements on drop, so that a cancelled or panicking request is not counted forever.
#[derive(Debug)]
struct InFlightGuard(Arc<Inner>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project! {
    /// Response future of [`ShutdownService`].
    #[derive(Debug)]
    pub struct ShutdownFuture<F> {
        #[pin]
        inner: TaskLocalFuture<ShutdownToken, F>,
        guard: Option<InFlightGuard>,
        http1: bool,
    }
}

impl<F, ResBody, E> Future for ShutdownFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = std::task::ready!(this.inner.poll(cx));
        if let Some(guard) = this.guard.take() {
            if let Ok(response) = &mut result {
                // HTTP/2 has no Connection header (hyper would reject it); those clients get a GOAWAY when
                // draining starts instead.
                if *this.http1 && guard.0.started.borrow().is_some() {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
            }
            drop(guard);
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use http::StatusCode;

    use super::*;
    use crate::shutdown::{ShutdownSettings, Trigger};

    fn settings(grace: u64, delay: u64) -> ShutdownSettings {
        ShutdownSettings {
            grace_period: Duration::from_secs(grace),
            delay: Duration::from_secs(delay),
        }
    }

    #[tokio::test]
    async fn only_the_first_trigger_counts_and_connection_close_follows_it() {
        use tower::ServiceExt;
        let shutdown = Shutdown::new(settings(10, 3));
        let service = shutdown
            .layer()
            .layer(tower::service_fn(|_: Request<()>| async {
                Ok::<_, std::convert::Infallible>(Response::new(()))
            }));

        let response = service.clone().oneshot(Request::new(())).await.unwrap();
        assert!(response.headers().get(header::CONNECTION).is_none());

        shutdown.trigger();
        let (first, trigger) = shutdown.started().await;
        shutdown.start(Trigger::Sigterm);
        assert_eq!(shutdown.started().await, (first, trigger));
        assert_eq!(trigger, Trigger::Internal);

        let response = service.clone().oneshot(Request::new(())).await.unwrap();
        assert_eq!(response.headers()[header::CONNECTION], "close");
        let mut h2 = Request::new(());
        *h2.version_mut() = Version::HTTP_2;
        let response = service.oneshot(h2).await.unwrap();
        assert!(response.headers().get(header::CONNECTION).is_none());
        assert_eq!(shutdown.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_handler_takes_the_token_and_sees_draining_start() {
        use axum::body::Body;
        use axum::routing::get;
        use tower::ServiceExt;
        let shutdown = Shutdown::new(ShutdownSettings::default());
        let (entered, waiting) = tokio::sync::oneshot::channel::<()>();
        let entered = Arc::new(Mutex::new(Some(entered)));
        let long_poll = move |token: ShutdownToken| async move {
            if let Some(entered) = entered.lock().ok().and_then(|mut entered| entered.take()) {
                let _ = entered.send(());
            }
            token.cancelled().await;
            "drained"
        };
        let app = axum::Router::new().route("/poll", get(long_poll.clone()));
        let poll = || Request::get("/poll").body(Body::empty()).unwrap();

        let pending = tokio::spawn(app.clone().layer(shutdown.layer()).oneshot(poll()));
        waiting.await.unwrap();
        assert!(!shutdown.token().is_cancelled());
        shutdown.begin_drain();
        // Bounded, so that a token draining does not reach fails the test instead of hanging it.
        let response = tokio::time::timeout(Duration::from_secs(10), pending)
            .await
            .expect("the long poll ends once draining starts")
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 64)
            .await
            .unwrap();
        assert_eq!(body, "drained");

        // Outside the layer there is no token: a 500 for the miswired handler, not a hang.
        let response = app.oneshot(poll()).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[tokio::test]
    async fn in_flight_counts_until_the_response_and_after_cancellation() {
        use tower::ServiceExt;
        let shutdown = Shutdown::new(ShutdownSettings::default());
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let released = Arc::new(tokio::sync::Mutex::new(Some(released)));
        let service = shutdown
            .layer()
            .layer(tower::service_fn(move |_: Request<()>| {
                let released = released.clone();
                async move {
                    if let Some(released) = released.lock().await.take() {
                        let _ = released.await;
                    }
                    Ok::<_, std::convert::Infallible>(Response::new(()))
                }
            }));
        let pending = tokio::spawn(service.clone().oneshot(Request::new(())));
        while shutdown.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        let cancelled = service.oneshot(Request::new(()));
        assert_eq!(
            shutdown.in_flight(),
            1,
            "a future not yet called is not in flight"
        );
        drop(cancelled);
        release.send(()).unwrap();
        pending.await.unwrap().unwrap();
        assert_eq!(shutdown.in_flight(), 0);
    }
}
