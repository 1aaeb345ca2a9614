//! The eHealth key-value store: `/properties/{application}/{key}`, for small shared configuration values.
//!
//! The contract the kit assumes (statuses, ETags, `If-Match`, media types, limits) is written down in
//! `docs/kvstore.md`; [`KvStore`] follows it, and the in-memory stand-in in `crates/kvstore-standin` implements it
//! for tests and local development.

mod client;

pub use client::{
    Auth, ETag, Entry, KvError, KvStore, KvStoreSettings, MAX_KEY_LEN, MAX_VALUE_BYTES, MediaType,
    valid_key,
};
