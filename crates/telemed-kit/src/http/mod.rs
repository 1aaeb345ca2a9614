//! HTTP: the server stack every request goes through.
//!
//! # Layout
//! - [`server`]: dual-stack listener and the accept loop that keeps accepting through the shutdown delay,
//!   then drains.

pub mod server;
