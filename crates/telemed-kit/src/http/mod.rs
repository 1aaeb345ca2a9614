//! HTTP: the server stack every request goes through, the outbound client, and error responses.
//!
//! # Layout
//! - [`bind`] and [`serve`]: the dual-stack listener, and the accept loop that keeps accepting through the
//!   shutdown delay and then drains; [`BodyReadTimeoutLayer`] for request bodies that stall.
//! - [`Client`]: the outbound client that forwards trace context, request id and audit headers.
//! - [`Problem`]: `application/problem+json` error bodies, [`problem_for_plain_errors`] for the responses
//!   that are not, and [`panic_response`] for a handler that panicked.

mod client;
mod problem;
mod server;

pub use client::{Client, ClientError, ClientSettings, RequestBuilder};
pub use problem::{PROBLEM_JSON, Problem, panic_response, problem_for_plain_errors};
pub use server::{
    BODY_READ_TIMEOUT, BodyReadTimeout, BodyReadTimeoutFuture, BodyReadTimeoutLayer,
    HEADER_READ_TIMEOUT, MAX_HEADER_BYTES, bind, serve,
};
