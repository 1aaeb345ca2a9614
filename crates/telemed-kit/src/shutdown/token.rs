//! [`ShutdownToken`]: how a long-lived handler learns that draining has started.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::response::IntoResponse;
use http::StatusCode;
use http::request::Parts;

use super::state::{Inner, Shutdown};

/// Cancelled when the service starts draining.
///
/// An axum extractor in every handler under [`Shutdown::layer`](super::Shutdown::layer): the layer makes the
/// request's token current for the request's task, which costs less than a request extension (an allocation
/// and a map insert per request). Code outside a request gets one from [`Shutdown::token`](super::Shutdown::token).
#[derive(Clone)]
pub struct ShutdownToken(Arc<Inner>);

impl std::fmt::Debug for ShutdownToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShutdownToken")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl ShutdownToken {
    // One per request under the layer: an `Arc` clone, where cloning the `CancellationToken` itself would take
    // its lock, on every request, twice.
    pub(super) fn new(shutdown: Arc<Inner>) -> Self {
        Self(shutdown)
    }

    /// Completes when draining starts.
    pub async fn cancelled(&self) {
        self.0.draining.cancelled().await;
    }

    /// Whether draining has started.
    pub fn is_cancelled(&self) -> bool {
        self.0.draining.is_cancelled()
    }
}

impl Shutdown {
    /// A token cancelled when draining starts.
    pub fn token(&self) -> ShutdownToken {
        ShutdownToken::new(Arc::clone(&self.inner))
    }
}

tokio::task_local! {
    pub(super) static CURRENT: ShutdownToken;
}

impl<S: Sync> FromRequestParts<S> for ShutdownToken {
    type Rejection = MissingShutdownToken;

    async fn from_request_parts(_: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        CURRENT.try_with(Clone::clone).map_err(|_| {
            tracing::error!(
                "a handler takes a ShutdownToken but is not under Shutdown::layer (the kit's server stack)"
            );
            MissingShutdownToken
        })
    }
}

/// The rejection of the [`ShutdownToken`] extractor outside [`Shutdown::layer`](super::Shutdown::layer): a 500,
/// since the handler's wiring is wrong, not the request. Its body is empty; the kit's server stack turns it into
/// problem JSON like every other error response.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("no ShutdownToken: the handler is not under Shutdown::layer")]
pub struct MissingShutdownToken;

impl IntoResponse for MissingShutdownToken {
    fn into_response(self) -> axum::response::Response {
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    }
}
