//! [`Auth`]: verifies bearer tokens against the issuer's keys and caches what it verified.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, header};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, decode, decode_header};

use super::caller::{Caller, Claims};
use super::error::AuthError;
use super::keys::{ALGORITHMS, KeySet, KeyStore, KeysError, REFETCH_INTERVAL, REFRESH_INTERVAL};
use super::settings::AuthSettings;
use crate::cache::{Cache, CachePolicy, CacheSettings, Capacity};
use crate::health::Check;
use crate::http::Client;

/// The longest token accepted, in bytes. eHealth tokens are 1 to 4 KiB; a longer one is refused before any of
/// it is decoded.
pub const MAX_TOKEN_BYTES: usize = 12 * 1024;

/// Verified tokens remembered at most; the bound on the claims cache's memory (a few hundred bytes each).
pub const CLAIMS_CACHE_ENTRIES: u64 = 20_000;

/// The longest a verified token is remembered, even when it expires later; its `exp` ends it earlier.
const CLAIMS_CACHE_TTL: Duration = Duration::from_secs(300);

type TokenHash = [u8; 32];

/// Verifies eHealth access tokens. Cheap to clone; every clone shares the keys and the claims cache.
///
/// Put it in front of routes with [`Auth::layer`], then extract [`Caller`] in handlers or require a privilege
/// with [`RequirePrivilegeLayer`](super::RequirePrivilegeLayer). [`Auth::spawn_key_refresh`] keeps the keys
/// fresh in the background; [`Auth::readiness_check`] reports whether they were loaded.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

struct Inner {
    settings: AuthSettings,
    keys: KeyStore,
    /// Verified callers by the SHA-256 of their token: a token seen again costs a lookup and a clock read.
    claims: Cache<TokenHash, Caller, AuthError>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// A verifier with `settings`, fetching keys through `client`; the claims cache follows `cache`'s
    /// `CACHE_DISABLED`. Nothing is fetched yet: the first token, [`Auth::spawn_key_refresh`] or
    /// [`Auth::load_keys`] loads the keys.
    pub fn new(settings: AuthSettings, client: Client, cache: &CacheSettings) -> Self {
        let policy = CachePolicy::new(Capacity::Entries(CLAIMS_CACHE_ENTRIES), CLAIMS_CACHE_TTL);
        let claims = match Cache::new("auth-claims", policy, cache) {
            Ok(claims) => claims,
            Err(_) => super::keys::unreachable_policy(),
        };
        Self {
            inner: Arc::new(Inner {
                keys: KeyStore::new(client, settings.jwks_url.clone()),
                settings,
                claims,
            }),
        }
    }

    /// The settings it verifies with.
    pub fn settings(&self) -> &AuthSettings {
        &self.inner.settings
    }

    /// A layer that makes this verifier available to the [`Caller`] extractor and to
    /// [`RequirePrivilegeLayer`](super::RequirePrivilegeLayer) on the routes it wraps.
    pub fn layer(&self) -> super::AuthLayer {
        super::AuthLayer::new(self.clone())
    }

    /// Fetches the key set now (or reuses a fetch made in the last few seconds).
    pub async fn load_keys(&self) -> Result<(), KeysError> {
        self.inner
            .keys
            .refetch()
            .await
            .map(drop)
            .map_err(|error| (*error).clone())
    }

    /// The counters of the claims cache: `hits` are tokens that cost no signature check, `loads` the ones
    /// that were verified.
    pub fn claims_cache_stats(&self) -> crate::cache::CacheStats {
        self.inner.claims.stats()
    }

    /// Whether a key set was loaded at least once.
    pub fn keys_loaded(&self) -> bool {
        self.inner.keys.current().is_some()
    }

    /// A readiness check named `auth-keys` that passes once the issuer's keys were loaded: required, it keeps
    /// an instance out of the load balancer until it can verify tokens; optional, it reports `degraded`.
    pub fn readiness_check(&self) -> Check {
        let auth = self.clone();
        Check::new("auth-keys", move || {
            let auth = auth.clone();
            async move {
                if auth.keys_loaded() {
                    Ok(())
                } else {
                    auth.load_keys().await
                }
            }
        })
    }

    /// Starts refreshing the keys in the background: at once, then every few seconds until a set is loaded,
    /// then every 5 minutes. The task stops when the returned guard is dropped.
    pub fn spawn_key_refresh(&self) -> KeyRefreshGuard {
        let auth = self.clone();
        let task = tokio::spawn(async move {
            loop {
                let pause = match auth.load_keys().await {
                    Ok(()) => REFRESH_INTERVAL,
                    Err(_) if auth.keys_loaded() => REFETCH_INTERVAL * 6,
                    Err(_) => REFETCH_INTERVAL,
                };
                tokio::time::sleep(pause).await;
            }
        });
        KeyRefreshGuard(task)
    }

    /// Verifies the bearer token of a request's headers.
    ///
    /// Exactly one `Authorization` header is accepted, so that the token verified is the token the kit's
    /// client relays.
    pub async fn verify_headers(&self, headers: &HeaderMap) -> Result<Caller, AuthError> {
        self.verify_bytes(bearer(headers)?).await
    }

    /// Verifies `token` (the JWT, without `Bearer `): signature, algorithm, `exp`, `nbf`, `iss` and `aud`.
    pub async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        self.verify_bytes(token.as_bytes()).await
    }

    /// The token's bytes are checked to be text only on a miss: a hit is a token whose very bytes were
    /// verified before, and skipping the check saves a pass over a kilobyte on every request that reuses one.
    async fn verify_bytes(&self, token: &[u8]) -> Result<Caller, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLarge);
        }
        let hash = hash(token);
        let leeway = self.inner.settings.leeway;
        let caller = self
            .inner
            .claims
            .get_or_try_load_lazy(
                hash,
                || async { self.verify_uncached(text(token)?).await },
                |_| true,
            )
            .await
            .map_err(|error| (*error).clone())?;
        // The cache serves an entry for up to 5 minutes; the token's own expiry ends it earlier.
        if caller.expires_at + leeway < SystemTime::now() {
            self.inner.claims.invalidate(&hash).await;
            return Err(AuthError::Expired);
        }
        Ok(caller)
    }

    async fn verify_uncached(&self, token: &str) -> Result<Caller, AuthError> {
        let header = decode_header(token).map_err(|error| match error.kind() {
            ErrorKind::InvalidAlgorithmName | ErrorKind::UnsupportedAlgorithm => {
                AuthError::Algorithm
            }
            _ => AuthError::Malformed,
        })?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(AuthError::Algorithm);
        }
        let kid = header.kid.ok_or(AuthError::UnknownKey)?;
        let keys = self.keys_with(&kid).await?;
        let key = keys.get(&kid).ok_or(AuthError::UnknownKey)?;
        if !key.algorithms.contains(&header.alg) {
            // An RSA key named by an ES256 token, or a key published for another algorithm.
            return Err(AuthError::Signature);
        }
        let settings = &self.inner.settings;
        let mut validation = Validation::new(header.alg);
        validation.leeway = settings.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&settings.issuers);
        validation.set_audience(&[&settings.audience]);
        let claims = decode::<Claims>(token, &key.key, &validation)
            .map_err(|error| classify(error.kind()))?
            .claims;
        claims.into_caller().map_err(|bad| AuthError::Claims(bad.0))
    }

    /// The key set to look `kid` up in: the current one when it has the key; else a refetched one (at most one
    /// fetch per few seconds, shared by every waiting request), so that a rotation needs no restart.
    async fn keys_with(&self, kid: &str) -> Result<Arc<KeySet>, AuthError> {
        let current = self.inner.keys.current();
        if let Some(current) = &current
            && current.get(kid).is_some()
        {
            return Ok(Arc::clone(current));
        }
        match self.inner.keys.refetch().await {
            Ok(set) => Ok(set),
            Err(error) => {
                crate::alert!(error = %error, "auth: the issuer's key set could not be refreshed");
                current.ok_or(AuthError::KeysUnavailable)
            }
        }
    }
}

fn classify(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => AuthError::Signature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::MissingAlgorithm => AuthError::Algorithm,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::Issuer,
        ErrorKind::InvalidAudience => AuthError::Audience,
        ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) => {
            AuthError::Claims("exp, iss or aud")
        }
        _ => AuthError::Malformed,
    }
}

fn hash(token: &[u8]) -> TokenHash {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token);
    let mut hash = [0; 32];
    hash.copy_from_slice(digest.as_ref());
    hash
}

/// The token of the request's one `Authorization: Bearer` header, as sent: whether it is text is for
/// [`text`] to say, on a miss.
pub(super) fn bearer(headers: &HeaderMap) -> Result<&[u8], AuthError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(AuthError::Missing)?;
    if values.next().is_some() {
        return Err(AuthError::NotBearer);
    }
    if value.len() > MAX_TOKEN_BYTES + 7 {
        return Err(AuthError::TooLarge);
    }
    let value = value.as_bytes();
    let space = value
        .iter()
        .position(|byte| *byte == b' ')
        .ok_or(AuthError::NotBearer)?;
    let (scheme, token) = (&value[..space], &value[space + 1..]);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(AuthError::NotBearer);
    }
    let token = token.trim_ascii();
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(token)
}

/// A token as text, for the JWT parser, which refuses anything but base64url parts joined by dots.
fn text(token: &[u8]) -> Result<&str, AuthError> {
    std::str::from_utf8(token).map_err(|_| AuthError::Malformed)
}

/// Keeps the background key refresh of [`Auth::spawn_key_refresh`] running; dropping it stops the task.
#[derive(Debug)]
#[must_use = "the key refresh stops when the guard is dropped"]
pub struct KeyRefreshGuard(tokio::task::JoinHandle<()>);

impl Drop for KeyRefreshGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}
