//! Error responses as `application/problem+json` (RFC 9457).
//!
//! Every 4xx and 5xx the kit produces, and every one a service returns through [`Problem`], has the same
//! small shape: `type`, `title`, `status`, and an optional `detail` written for the client. Internal error text,
//! hostnames and stack traces never go into it: they go to the log.
//!
//! # Example
//!
//! ```
//! use axum::response::IntoResponse;
//! use http::StatusCode;
//! use telemed_kit::http::Problem;
//!
//! let response = Problem::new(StatusCode::NOT_FOUND).detail("no setting with that key").into_response();
//! assert_eq!(response.headers()["content-type"], "application/problem+json");
//! ```

use std::borrow::Cow;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

/// The media type of problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem-details response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    kind: Cow<'static, str>,
    title: Cow<'static, str>,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<Cow<'static, str>>,
}

impl Problem {
    /// A problem with the status's reason phrase as title and `about:blank` as type.
    pub fn new(status: StatusCode) -> Self {
        Self {
            kind: Cow::Borrowed("about:blank"),
            title: Cow::Borrowed(status.canonical_reason().unwrap_or("Error")),
            status: status.as_u16(),
            detail: None,
        }
    }

    /// A human-readable explanation for the client; it passes through redaction.
    pub fn detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        let detail = detail.into();
        self.detail = Some(match crate::redact::redact(&detail) {
            Cow::Borrowed(_) => detail,
            Cow::Owned(redacted) => Cow::Owned(redacted),
        });
        self
    }

    /// A URI identifying the problem type. Defaults to `about:blank`.
    pub fn kind(mut self, uri: impl Into<Cow<'static, str>>) -> Self {
        self.kind = uri.into();
        self
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.title)
    }
}

/// Turns an error response that is not already JSON into a problem-details response with the same status.
///
/// axum's own rejections (a path that does not parse, a body over the limit, an unknown route, a method not
/// allowed) answer in plain text, sometimes echoing the input; the server stack passes every response through
/// this so that every 4xx and 5xx has the same shape and says nothing about the input.
pub fn problem_for_plain_errors(response: axum::response::Response) -> axum::response::Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value.starts_with("application/json") || value.starts_with(PROBLEM_JSON)
        });
    if is_json {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let problem = Problem::new(status).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    axum::response::Response::from_parts(parts, problem.into_body())
}

/// The response to a handler that panicked, for `tower_http::catch_panic::CatchPanicLayer::custom`: a 500
/// problem that tells the client nothing. The panic hook
/// ([`install_panic_hook`](crate::telemetry::log::install_panic_hook)) has already logged the panic as
/// `critical`, with the request's trace id.
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    Problem::new(StatusCode::INTERNAL_SERVER_ERROR).into_response()
}
