//! HTTP: the server stack every request goes through, the outbound client, and error responses.
//!
//! # Layout
//! - [`server`]: dual-stack listener and the accept loop that keeps accepting through the shutdown delay,
//!   then drains.
//! - [`client`]: the outbound client that forwards trace context, request id and audit headers.
//! - [`problem`]: `application/problem+json` error bodies.

pub mod client;
pub mod problem;
pub mod server;

pub use client::{Client, ClientError, ClientSettings, RequestBuilder};
pub use problem::Problem;
