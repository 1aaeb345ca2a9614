//! Who is calling: eHealth access tokens verified, their claims as an axum extractor, privileges enforced.
//!
//! Every request on the eHealth Infrastructure carries the caller's access token (`Authorization: Bearer
//! <JWT>`) from the platform's Keycloak realms. [`Auth`] verifies it against the issuer's published keys
//! (RS256, PS256 or ES256 only; `exp`, `nbf`, `iss` and `aud` checked, with `AUTH_LEEWAY` of clock skew), and
//! hands the handler a typed [`Caller`]: user id and type, privileges, context as FHIR references, scope and
//! client. Routes opt in: [`Service::auth`](crate::Service::auth) (or, without `Service`, [`AuthLayer`])
//! only carries the verifier, a handler that extracts [`Caller`] or a route behind [`RequirePrivilegeLayer`]
//! needs a valid token, and probes and `/metrics` never do.
//!
//! - A missing, malformed, expired or badly signed token gets 401 with `WWW-Authenticate: Bearer
//!   error="invalid_token"` and a problem+json body that says nothing more; the log line says which check
//!   failed, never with the token.
//! - A caller without the required privilege gets 403 problem+json naming it.
//! - Until the issuer's keys were loaded once, a token cannot be checked: 503.
//!
//! # Example
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use telemed_kit::auth::{Auth, AuthSettings, Caller, RequirePrivilegeLayer};
//! use telemed_kit::config::Env;
//!
//! async fn whoami(caller: Caller) -> String {
//!     format!("{:?} with {} privileges", caller.user_type, caller.privileges.len())
//! }
//!
//! # async fn wire(service: telemed_kit::Service) -> std::process::ExitCode {
//! let env = Env::process();
//! // Read with the other settings, before anything binds: a bad value exits 2 naming the variable.
//! let settings = AuthSettings::from_env(&env).unwrap_or_else(|error| error.exit());
//! let auth = Auth::new(settings, service.client(), &service.settings().cache);
//! let _refresh = auth.spawn_key_refresh();
//! let app = Router::new()
//!     .route("/whoami", get(whoami))
//!     .route("/admin", get(|| async { "ok" }))
//!     .route_layer(RequirePrivilegeLayer::new("Admin.read"));
//! service.check(auth.readiness_check()).auth(auth).run(app).await
//! # }
//! ```
//!
//! # Speed
//!
//! A verified token's caller is cached by the SHA-256 of the token, for at most 5 minutes and never past its
//! `exp` (plus the leeway), in a bounded cache ([`CLAIMS_CACHE_ENTRIES`]): a token seen again costs a hash and a
//! lookup, not a signature check. `CACHE_DISABLED` turns this cache off like every other.
//!
//! # Keys
//!
//! The key set (JWKS) is fetched through the kit's [`Client`](crate::http::Client) (with trace context and
//! `User-Agent`), refreshed every 5 minutes by [`Auth::spawn_key_refresh`], and fetched again at once when a
//! token names a `kid` the current set lacks, so that a rotation needs no restart. Such fetches are
//! single-flight and at most one per 5 seconds, whatever the traffic; the last good set is kept while the
//! issuer is down or answers garbage.
//!
//! # Why the service verifies, even behind Istio
//!
//! Istio's `RequestAuthentication` can check a JWT at the sidecar, but only when the platform configures it for
//! the service, and it does not check privileges or context. The platform notes that services verify the tokens
//! they receive: a service that trusts a header it did not check trusts every pod that can reach it.
//!
//! # Choices
//!
//! - `jsonwebtoken` does the JWT work, with the aws-lc-rs backend that rustls already brings: no second
//!   crypto library in the build.
//! - One `Authorization` header only: with two, the token verified and the token the kit's client relays could
//!   differ.

mod caller;
mod error;
mod keys;
mod layer;
mod settings;
mod verifier;

pub use caller::{Caller, CallerClaims, CallerContext, ContextElement, FhirReference, UserType};
pub use error::AuthError;
pub use keys::KeysError;
pub use layer::{AuthLayer, AuthRejection, AuthService, RequirePrivilege, RequirePrivilegeLayer};
pub use settings::{AuthSettings, MAX_LEEWAY};
pub use verifier::{Auth, CLAIMS_CACHE_ENTRIES, KeyRefreshGuard, MAX_TOKEN_BYTES};
