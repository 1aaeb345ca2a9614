//! The eHealth key-value store: `/properties/{application}/{key}`, for small shared configuration values.
//!
//! The contract the kit assumes (statuses, ETags, `If-Match`, media types, limits) is written down in
//! `docs/kvstore.md` and implemented by the in-memory stand-in in [`standin`] (feature `kvstore-standin`).

#[cfg(feature = "kvstore-standin")]
pub mod standin;
