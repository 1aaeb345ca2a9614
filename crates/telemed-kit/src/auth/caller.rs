//! [`Caller`]: who is calling, from the claims of a verified eHealth access token.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

/// The kind of user a token was issued to (`user_type`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UserType {
    /// A system: a client-credentials token of another service.
    System,
    /// A citizen (the `nemlogin` realm).
    Patient,
    /// A clinical user.
    Practitioner,
    /// A user signed in through an SSL certificate login (employee certificate).
    Ssl,
    /// A value this version of the kit does not know; kept as it was written.
    Other(String),
}

impl UserType {
    fn parse(raw: &str) -> Self {
        match raw {
            "SYSTEM" => Self::System,
            "PATIENT" => Self::Patient,
            "PRACTITIONER" => Self::Practitioner,
            "SSL" => Self::Ssl,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The claim's value (`SYSTEM`, `PATIENT`, ...).
    pub fn as_str(&self) -> &str {
        match self {
            Self::System => "SYSTEM",
            Self::Patient => "PATIENT",
            Self::Practitioner => "PRACTITIONER",
            Self::Ssl => "SSL",
            Self::Other(other) => other,
        }
    }
}

/// An absolute FHIR reference such as `https://fut.com/fhir/Patient/8`, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FhirReference {
    url: String,
    type_at: usize,
    id_at: usize,
}

impl FhirReference {
    /// Parses `https://<server>/<path>/<ResourceType>/<id>`: an http(s) URL whose last two path segments are a
    /// resource type (a capitalised name) and an id (FHIR's `[A-Za-z0-9\-\.]{1,64}`).
    pub fn parse(url: &str) -> Option<Self> {
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))?;
        if rest.contains(['?', '#', ' ']) {
            return None;
        }
        let (base, id) = url.rsplit_once('/')?;
        let (_, resource_type) = base.rsplit_once('/')?;
        let id_ok = (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        let type_ok = resource_type.starts_with(|c: char| c.is_ascii_uppercase())
            && resource_type.bytes().all(|b| b.is_ascii_alphabetic());
        let host_ok = rest.split('/').next().is_some_and(|host| !host.is_empty())
            && rest.matches('/').count() >= 2;
        (id_ok && type_ok && host_ok).then(|| Self {
            url: url.to_owned(),
            type_at: base.len() - resource_type.len(),
            id_at: base.len() + 1,
        })
    }

    /// The whole reference, as the token has it.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The resource type (`Patient`, `Organization`, ...).
    pub fn resource_type(&self) -> &str {
        &self.url[self.type_at..self.id_at - 1]
    }

    /// The logical id.
    pub fn id(&self) -> &str {
        &self.url[self.id_at..]
    }

    /// The FHIR server's base URL (everything before the resource type, without the slash).
    pub fn base(&self) -> &str {
        &self.url[..self.type_at.saturating_sub(1)]
    }
}

impl fmt::Display for FhirReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// The context a token was issued for (`context`): what the caller's privileges apply to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallerContext {
    /// `context.organization_id`.
    pub organization: Option<FhirReference>,
    /// `context.care_team_id`.
    pub care_team: Option<FhirReference>,
    /// `context.episode_of_care_id`.
    pub episode_of_care: Option<FhirReference>,
    /// `context.patient_id`.
    pub patient: Option<FhirReference>,
}

/// One element of a token's context, for [`RequirePrivilegeLayer::with_context`](super::RequirePrivilegeLayer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ContextElement {
    /// `context.organization_id`.
    Organization,
    /// `context.care_team_id`.
    CareTeam,
    /// `context.episode_of_care_id`.
    EpisodeOfCare,
    /// `context.patient_id`.
    Patient,
}

impl ContextElement {
    /// The claim's name inside `context`.
    pub fn claim(self) -> &'static str {
        match self {
            Self::Organization => "organization_id",
            Self::CareTeam => "care_team_id",
            Self::EpisodeOfCare => "episode_of_care_id",
            Self::Patient => "patient_id",
        }
    }
}

impl CallerContext {
    /// The reference for `element`, if the token has one.
    pub fn get(&self, element: ContextElement) -> Option<&FhirReference> {
        match element {
            ContextElement::Organization => self.organization.as_ref(),
            ContextElement::CareTeam => self.care_team.as_ref(),
            ContextElement::EpisodeOfCare => self.episode_of_care.as_ref(),
            ContextElement::Patient => self.patient.as_ref(),
        }
    }
}

/// The caller of a request: a shared handle on the claims of its verified access token ([`CallerClaims`],
/// which it dereferences to: `caller.privileges`, `caller.context`).
///
/// Cloning it is an atomic increment: the claims cache, the request and every extraction share one copy.
///
/// Extract it in a handler (`caller: Caller`) behind [`Service::auth`](crate::Service::auth) or an
/// [`AuthLayer`](super::AuthLayer): the request is
/// answered 401 when its token is missing or invalid.
#[derive(Clone, PartialEq, Eq)]
pub struct Caller(Arc<CallerClaims>);

impl Deref for Caller {
    type Target = CallerClaims;

    fn deref(&self) -> &CallerClaims {
        &self.0
    }
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The claims of a verified access token that say who the caller is and what it may do.
///
/// The personal claims (`preferred_username`, `name`) are deliberately not read: they are personal data, and
/// nothing in a service's access decision needs them. `Debug` shows every field (none is personal).
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallerClaims {
    /// `sub`: the token's subject (a Keycloak id).
    pub subject: Option<String>,
    /// `user_id`: a FHIR Patient or Practitioner id, or a Keycloak id.
    pub user_id: Option<String>,
    /// `user_type`.
    pub user_type: Option<UserType>,
    /// `realm_access.roles`: the privileges, such as `Patient.read`.
    pub privileges: BTreeSet<String>,
    /// `context`: what the privileges apply to.
    pub context: CallerContext,
    /// `scope`, split on spaces.
    pub scope: BTreeSet<String>,
    /// `azp`: the client the token was issued to, such as `EmployeeClient`.
    pub client: Option<String>,
    /// `iss`: the realm that issued the token.
    pub issuer: String,
    /// `exp`: when the token expires.
    pub expires_at: SystemTime,
}

impl CallerClaims {
    /// Whether the token grants `privilege`.
    pub fn has_privilege(&self, privilege: &str) -> bool {
        self.privileges.contains(privilege)
    }
}

/// The claims read from a token's payload; everything else in it is ignored.
#[derive(Deserialize)]
pub(super) struct Claims {
    // Optional here so that a token without them fails validation by name, not as malformed JSON; the
    // validation requires both before a caller is made.
    exp: Option<u64>,
    iss: Option<String>,
    sub: Option<String>,
    user_id: Option<String>,
    user_type: Option<String>,
    #[serde(default)]
    realm_access: RealmAccess,
    #[serde(default)]
    context: ContextClaims,
    scope: Option<String>,
    azp: Option<String>,
}

#[derive(Deserialize, Default)]
struct RealmAccess {
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(Deserialize, Default)]
struct ContextClaims {
    organization_id: Option<String>,
    care_team_id: Option<String>,
    episode_of_care_id: Option<String>,
    patient_id: Option<String>,
}

/// A context element that is not an absolute FHIR reference.
#[derive(Debug)]
pub(super) struct BadContext(pub(super) &'static str);

impl Claims {
    pub(super) fn into_caller(self) -> Result<Caller, BadContext> {
        let reference = |value: Option<String>, element: ContextElement| match value {
            None => Ok(None),
            Some(value) if value.is_empty() => Ok(None),
            Some(value) => FhirReference::parse(&value)
                .map(Some)
                .ok_or(BadContext(element.claim())),
        };
        let context = CallerContext {
            organization: reference(self.context.organization_id, ContextElement::Organization)?,
            care_team: reference(self.context.care_team_id, ContextElement::CareTeam)?,
            episode_of_care: reference(
                self.context.episode_of_care_id,
                ContextElement::EpisodeOfCare,
            )?,
            patient: reference(self.context.patient_id, ContextElement::Patient)?,
        };
        Ok(Caller(Arc::new(CallerClaims {
            subject: self.sub,
            user_id: self.user_id,
            user_type: self.user_type.as_deref().map(UserType::parse),
            privileges: self.realm_access.roles.into_iter().collect(),
            context,
            scope: self
                .scope
                .unwrap_or_default()
                .split_ascii_whitespace()
                .map(str::to_owned)
                .collect(),
            client: self.azp,
            issuer: self.iss.unwrap_or_default(),
            expires_at: UNIX_EPOCH
                + Duration::from_secs(self.exp.unwrap_or(0).min(i64::MAX as u64 / 2)),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_base_type_and_id() {
        let reference = FhirReference::parse("https://fut.com/fhir/Patient/8").unwrap();
        assert_eq!(reference.base(), "https://fut.com/fhir");
        assert_eq!(reference.resource_type(), "Patient");
        assert_eq!(reference.id(), "8");
        for bad in [
            "Patient/8",
            "https://fut.com/Patient/",
            "https://fut.com/fhir/patient/8",
            "https://fut.com/fhir/Patient/8?x=1",
            "ftp://fut.com/fhir/Patient/8",
            "https:///Patient/8",
            "https://fut.com/fhir/Patient/a_b",
        ] {
            assert!(FhirReference::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn claims_become_a_caller_without_personal_data() {
        let claims: Claims = serde_json::from_value(serde_json::json!({
            "exp": 2_000_000_000u64, "iss": "https://issuer", "sub": "s", "user_id": "u",
            "user_type": "PRACTITIONER", "preferred_username": "Jens", "name": "Jens Hansen",
            "realm_access": {"roles": ["Patient.read", "Patient.write"]},
            "context": {"organization_id": "https://fut.com/fhir/Organization/1", "patient_id": ""},
            "scope": "openid  ehealth", "azp": "EmployeeClient"
        }))
        .unwrap();
        let caller = claims.into_caller().unwrap();
        assert_eq!(caller.user_type, Some(UserType::Practitioner));
        assert!(caller.has_privilege("Patient.write") && !caller.has_privilege("Patient"));
        assert_eq!(
            caller
                .context
                .get(ContextElement::Organization)
                .unwrap()
                .id(),
            "1"
        );
        assert_eq!(caller.context.patient, None);
        assert_eq!(caller.scope.len(), 2);
        assert!(!format!("{caller:?}").contains("Jens"));
        let bad: Claims = serde_json::from_value(serde_json::json!({
            "exp": 1, "iss": "i", "context": {"patient_id": "8"}
        }))
        .unwrap();
        assert_eq!(bad.into_caller().unwrap_err().0, "patient_id");
    }
}
