//! The issuer's signing keys: the JWKS parsed into verification keys, fetched through the kit's client, the
//! last good set kept, refetches single-flight and rate-limited through a [`Cache`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::cache::{Cache, CachePolicy, CacheSettings, Capacity};
use crate::http::Client;

/// The signature algorithms accepted: the ones Keycloak signs eHealth tokens with. `none` does not parse, and
/// HMAC (whose key would be the published public key) and every other algorithm are refused by name.
pub(super) const ALGORITHMS: [Algorithm; 3] =
    [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256];

/// The shortest time between two fetches of the key set: a stream of tokens naming unknown `kid`s costs the
/// issuer one request per this interval, whatever the request rate.
pub(super) const REFETCH_INTERVAL: Duration = Duration::from_secs(5);

/// The time between two background refreshes once keys are loaded; Keycloak rotates keys on the scale of
/// days and publishes a new key before it signs with it, so this only bounds how long a removed key lives.
pub(super) const REFRESH_INTERVAL: Duration = Duration::from_secs(300);

/// The largest key set read; Keycloak's has a handful of keys, a few KiB.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// A key usable for verification, and the algorithms it may verify.
pub(super) struct VerificationKey {
    pub(super) key: DecodingKey,
    pub(super) algorithms: Vec<Algorithm>,
}

/// A parsed key set: the signing keys by `kid`; keys for encryption, of other types or curves, or without a
/// `kid`, are left out.
#[derive(Default)]
pub(super) struct KeySet {
    keys: HashMap<String, VerificationKey>,
}

impl KeySet {
    /// Parses a JWKS document. Fails only when it is not one (not JSON, no `keys` array); keys it cannot use
    /// are skipped one by one, so that one odd key does not take the others down.
    pub(super) fn parse(body: &[u8]) -> Result<Self, KeysError> {
        #[derive(serde::Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let document: Document = serde_json::from_slice(body).map_err(|_| KeysError::NotAKeySet)?;
        let keys = document
            .keys
            .into_iter()
            .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                Some((kid, verification_key(&jwk)?))
            })
            .collect();
        Ok(Self { keys })
    }

    pub(super) fn get(&self, kid: &str) -> Option<&VerificationKey> {
        self.keys.get(kid)
    }

    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }
}

fn verification_key(jwk: &Jwk) -> Option<VerificationKey> {
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|usage| *usage != PublicKeyUse::Signature)
    {
        return None;
    }
    let family: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => &[Algorithm::RS256, Algorithm::PS256],
        AlgorithmParameters::EllipticCurve(params) if params.curve == EllipticCurve::P256 => {
            &[Algorithm::ES256]
        }
        // HMAC secrets, Ed25519 and other curves: never a key for an eHealth token.
        _ => return None,
    };
    let algorithms = match jwk.common.key_algorithm {
        None => family.to_vec(),
        Some(named) => {
            let named = match named {
                KeyAlgorithm::RS256 => Algorithm::RS256,
                KeyAlgorithm::PS256 => Algorithm::PS256,
                KeyAlgorithm::ES256 => Algorithm::ES256,
                _ => return None,
            };
            family.contains(&named).then(|| vec![named])?
        }
    };
    Some(VerificationKey {
        key: DecodingKey::from_jwk(jwk).ok()?,
        algorithms,
    })
}

/// Why the key set could not be fetched.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum KeysError {
    /// The issuer could not be reached, or did not answer in time.
    #[error("the issuer's key set could not be fetched: {0}")]
    Unreachable(String),
    /// The issuer answered with a status other than 200.
    #[error("the issuer's key set answered HTTP {0}")]
    Status(u16),
    /// The answer is not a JWKS document, or is larger than 256 KiB.
    #[error("the issuer's key set is not a JWKS document")]
    NotAKeySet,
    /// The key set holds no key this verifier can use (RS256, PS256 or ES256 with a `kid`).
    #[error("the issuer's key set holds no usable signing key")]
    NoUsableKey,
}

/// The current key set and the means to fetch a new one.
pub(super) struct KeyStore {
    client: Client,
    url: String,
    /// The last key set fetched successfully: kept while the issuer is unreachable or answers garbage.
    current: RwLock<Option<Arc<KeySet>>>,
    /// The outcome of the last fetch, kept for [`REFETCH_INTERVAL`]: concurrent refetches share one request
    /// (single-flight), and a refetch within the interval gets the previous outcome instead of a request.
    fetches: Cache<(), Arc<KeySet>, KeysError>,
}

impl KeyStore {
    pub(super) fn new(client: Client, url: String) -> Self {
        let policy = CachePolicy::new(Capacity::Entries(1), REFETCH_INTERVAL)
            .with_ttl_jitter(0.0)
            .with_negative_ttl(REFETCH_INTERVAL);
        // Always on, whatever CACHE_DISABLED says: this cache is the rate limit on the issuer, not an
        // optimisation, and a pass-through would let unknown kids make one request each.
        let fetches = Cache::new("auth-jwks-fetch", policy, &CacheSettings::default())
            .unwrap_or_else(|_| unreachable_policy());
        Self {
            client,
            url,
            current: RwLock::new(None),
            fetches,
        }
    }

    /// The current key set, if one was ever loaded.
    pub(super) fn current(&self) -> Option<Arc<KeySet>> {
        self.current.read().ok().and_then(|current| current.clone())
    }

    /// Fetches the key set (or joins the fetch in flight, or reuses one made less than [`REFETCH_INTERVAL`]
    /// ago) and makes it current when it succeeded. Returns the current set, new or kept.
    pub(super) async fn refetch(&self) -> Result<Arc<KeySet>, Arc<KeysError>> {
        let (client, url) = (self.client.clone(), self.url.clone());
        let outcome = self
            .fetches
            .get_or_try_load((), async move { fetch(&client, &url).await.map(Arc::new) })
            .await;
        match outcome {
            Ok(set) => {
                if let Ok(mut current) = self.current.write() {
                    let changed = current.as_ref().is_none_or(|old| !Arc::ptr_eq(old, &set));
                    if changed {
                        tracing::info!(keys = set.len(), "auth: the issuer's key set was loaded");
                        *current = Some(Arc::clone(&set));
                    }
                }
                Ok(set)
            }
            Err(error) => Err(error),
        }
    }
}

/// The policy above is valid by construction; a failure here would be a bug in the kit, not input.
#[cold]
pub(super) fn unreachable_policy() -> ! {
    unreachable!("the key fetch cache policy is valid")
}

async fn fetch(client: &Client, url: &str) -> Result<KeySet, KeysError> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|error| KeysError::Unreachable(error.to_string()))?;
    if response.status() != reqwest::StatusCode::OK {
        return Err(KeysError::Status(response.status().as_u16()));
    }
    if response
        .content_length()
        .is_some_and(|length| length > MAX_JWKS_BYTES as u64)
    {
        return Err(KeysError::NotAKeySet);
    }
    let body = response.bytes().await.map_err(|error| {
        KeysError::Unreachable(crate::http::ClientError::from_reqwest(error).to_string())
    })?;
    if body.len() > MAX_JWKS_BYTES {
        return Err(KeysError::NotAKeySet);
    }
    let set = KeySet::parse(&body)?;
    if set.len() == 0 {
        return Err(KeysError::NoUsableKey);
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_N: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";

    #[test]
    fn only_signing_keys_of_the_accepted_types_are_kept() {
        let document = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "rsa", "use": "sig", "alg": "RS256", "n": RSA_N, "e": "AQAB"},
            {"kty": "RSA", "kid": "any-rsa", "n": RSA_N, "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "alg": "RSA-OAEP", "n": RSA_N, "e": "AQAB"},
            {"kty": "RSA", "kid": "rs512", "alg": "RS512", "n": RSA_N, "e": "AQAB"},
            {"kty": "RSA", "n": RSA_N, "e": "AQAB"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "weird"},
            "not an object"
        ]});
        let set = KeySet::parse(document.to_string().as_bytes()).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.get("rsa").unwrap().algorithms, [Algorithm::RS256]);
        assert_eq!(
            set.get("any-rsa").unwrap().algorithms,
            [Algorithm::RS256, Algorithm::PS256]
        );
        for garbage in [&b"<html>"[..], b"{}", b"{\"keys\": 3}", b""] {
            assert!(KeySet::parse(garbage).is_err());
        }
    }
}
