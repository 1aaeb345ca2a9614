//! [`AuthSettings`]: which issuers, keys, audience and clock skew the verifier accepts.

use std::time::Duration;

use crate::config::{ConfigError, Env};

/// The longest accepted `AUTH_LEEWAY`: clocks on the platform are synchronised, and a larger skew would let
/// an expired token live on for minutes.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// What the verifier accepts, read from `AUTH_*` variables.
///
/// # Example
///
/// ```
/// use telemed_kit::auth::AuthSettings;
/// use telemed_kit::config::Env;
///
/// let env = Env::from_pairs([(
///     "AUTH_ISSUER",
///     "https://saml.inttest.ehealth.sundhed.dk/auth/realms/ehealth",
/// )]);
/// let settings = AuthSettings::from_env(&env).unwrap();
/// assert_eq!(
///     settings.jwks_url,
///     "https://saml.inttest.ehealth.sundhed.dk/auth/realms/ehealth/protocol/openid-connect/certs"
/// );
/// assert_eq!(settings.audience, "EHealth");
///
/// let env = Env::from_pairs([("AUTH_ISSUER", "saml.inttest")]);
/// let error = AuthSettings::from_env(&env).unwrap_err();
/// assert_eq!(error.variable(), "AUTH_ISSUER");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthSettings {
    /// `AUTH_ISSUER`: the accepted `iss` values, comma-separated (the `ehealth` and `nemlogin` realms, for
    /// instance). Required: there is no default.
    pub issuers: Vec<String>,
    /// `AUTH_JWKS_URL`: where the issuer publishes its signing keys. Defaults to the first issuer's
    /// `/protocol/openid-connect/certs` (Keycloak's path).
    pub jwks_url: String,
    /// `AUTH_AUDIENCE`: the `aud` a token must name. Defaults to `EHealth`.
    pub audience: String,
    /// `AUTH_LEEWAY`: clock skew allowed when checking `exp` and `nbf`, at most 5 minutes. Defaults to 30s.
    pub leeway: Duration,
}

const URL_EXPECTED: &str =
    "an http(s) URL such as https://saml.inttest.ehealth.sundhed.dk/auth/realms/ehealth";

fn http_url(raw: &str) -> Option<String> {
    let url = reqwest::Url::parse(raw).ok()?;
    (matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some_and(|host| !host.is_empty())
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none())
    .then(|| raw.to_owned())
}

impl AuthSettings {
    /// Reads `AUTH_ISSUER`, `AUTH_JWKS_URL`, `AUTH_AUDIENCE` and `AUTH_LEEWAY`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let issuers = env.required(
            "AUTH_ISSUER",
            "one or more comma-separated http(s) issuer URLs such as \
             https://saml.inttest.ehealth.sundhed.dk/auth/realms/ehealth",
            |raw| {
                raw.split(',')
                    .map(|issuer| http_url(issuer.trim()))
                    .collect::<Option<Vec<_>>>()
            },
        )?;
        let jwks_url = match env.parse_with("AUTH_JWKS_URL", URL_EXPECTED, http_url)? {
            Some(url) => url,
            None => format!(
                "{}/protocol/openid-connect/certs",
                issuers
                    .first()
                    .map_or("", |issuer| issuer.trim_end_matches('/'))
            ),
        };
        let audience = env
            .parse_with(
                "AUTH_AUDIENCE",
                "an audience name of visible ASCII, at most 200 characters, such as EHealth",
                |raw| {
                    (raw.len() <= 200 && raw.bytes().all(|b| b.is_ascii_graphic()))
                        .then(|| raw.to_owned())
                },
            )?
            .unwrap_or_else(|| "EHealth".to_owned());
        let leeway = env.duration_or("AUTH_LEEWAY", Duration::from_secs(30))?;
        if leeway > MAX_LEEWAY {
            return Err(ConfigError::invalid(
                "AUTH_LEEWAY",
                &humantime::format_duration(leeway).to_string(),
                "a duration of at most 5m",
            ));
        }
        Ok(Self {
            issuers,
            jwks_url,
            audience,
            leeway,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "https://saml.inttest.ehealth.sundhed.dk/auth/realms/ehealth";

    fn read(pairs: &[(&str, &str)]) -> Result<AuthSettings, ConfigError> {
        AuthSettings::from_env(&Env::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn defaults_follow_the_first_issuer() {
        let nemlogin = "https://saml.inttest.ehealth.sundhed.dk/auth/realms/nemlogin";
        let settings = read(&[("AUTH_ISSUER", &format!("{ISSUER}/ , {nemlogin}"))]).unwrap();
        assert_eq!(
            settings.issuers,
            [format!("{ISSUER}/"), nemlogin.to_owned()]
        );
        assert_eq!(
            settings.jwks_url,
            format!("{ISSUER}/protocol/openid-connect/certs")
        );
        assert_eq!(settings.audience, "EHealth");
        assert_eq!(settings.leeway, Duration::from_secs(30));
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        let cases: [(&str, &str); 8] = [
            ("AUTH_ISSUER", "saml.inttest"),
            ("AUTH_ISSUER", &format!("{ISSUER},")),
            ("AUTH_ISSUER", "ftp://issuer.example"),
            ("AUTH_JWKS_URL", "https://user@issuer.example/certs"),
            ("AUTH_JWKS_URL", "certs"),
            ("AUTH_AUDIENCE", "E Health"),
            ("AUTH_LEEWAY", "soon"),
            ("AUTH_LEEWAY", "10m"),
        ];
        for (variable, value) in cases {
            let mut pairs = vec![("AUTH_ISSUER", ISSUER)];
            pairs.retain(|(name, _)| *name != variable);
            pairs.push((variable, value));
            let error = read(&pairs).unwrap_err();
            assert_eq!(error.variable(), variable, "{value}: {error}");
            assert!(!error.to_string().contains('\n'));
        }
        let error = read(&[]).unwrap_err();
        assert_eq!(error.variable(), "AUTH_ISSUER");
        assert!(error.to_string().starts_with("AUTH_ISSUER is not set"));
    }
}
