//! Port visibility: who may reach a forwarded port.
//!
//! Rules and sources:
//! - Three visibilities, private < org < public; all ports start private (DESIGN.md §1 "Port
//!   forwarding", workspace-agents.md §2.1).
//! - An organization policy can remove org and/or public from the choices; private can never be
//!   disabled (§2.1 "Restrict port visibility"). [`AllowedVisibilities`].
//! - Effective visibility = the highest visibility the policy allows that is not above the one
//!   set; org also needs the codespace to belong to an organization, else private (issue 3).
//! - Public: anyone, no authentication. Private: only the codespace's owner; org: the owner and
//!   members of the codespace's organization; both need an authenticated principal
//!   (`authentication-required`) whose authentication is less than 3 hours old
//!   (`authentication-expired`, the cookie lifetime of §2.1); an authentication time more than
//!   60 s in the future is `authentication-invalid` (issue 3; the 60 s absorbs clock skew).
//! - Logins and organizations compare case-insensitively (issue 3).
//!
//! The per-codespace state (ports, their visibility and an epoch) is [`crate::registry`].

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::decision::{Authorized, Decision, ReasonCode};
use crate::repo::same_login;

/// How long an authentication stays valid for private and org ports.
pub const AUTHENTICATION_LIFETIME: Duration = Duration::hours(3);

/// How far in the future an authentication time may be before it is refused.
pub const CLOCK_SKEW: Duration = Duration::seconds(60);

/// Who may reach a port, lowest first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// The codespace's owner, authenticated.
    #[default]
    Private,
    /// Members of the codespace's organization (and the owner), authenticated.
    Org,
    /// Anyone, without authentication.
    Public,
}

impl Visibility {
    /// All visibilities, lowest first.
    pub const ALL: [Visibility; 3] = [Visibility::Private, Visibility::Org, Visibility::Public];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Org => "org",
            Visibility::Public => "public",
        }
    }
}

/// The visibilities an organization allows; private always is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AllowedVisibilities {
    org: bool,
    public: bool,
}

impl Default for AllowedVisibilities {
    /// No policy: every visibility is allowed.
    fn default() -> Self {
        Self::ALL
    }
}

impl AllowedVisibilities {
    /// Every visibility (no restriction).
    pub const ALL: Self = Self {
        org: true,
        public: true,
    };
    /// Only private.
    pub const PRIVATE_ONLY: Self = Self {
        org: false,
        public: false,
    };

    /// Allows private plus the given visibilities.
    pub fn from_list(list: &[Visibility]) -> Self {
        Self {
            org: list.contains(&Visibility::Org),
            public: list.contains(&Visibility::Public),
        }
    }

    /// Whether `visibility` may be chosen.
    pub fn allows(self, visibility: Visibility) -> bool {
        match visibility {
            Visibility::Private => true,
            Visibility::Org => self.org,
            Visibility::Public => self.public,
        }
    }

    /// The highest allowed visibility not above `set`.
    pub fn clamp(self, set: Visibility) -> Visibility {
        Visibility::ALL
            .into_iter()
            .rev()
            .find(|v| *v <= set && self.allows(*v))
            .unwrap_or(Visibility::Private)
    }
}

/// The codespace a port belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodespaceIdentity {
    /// The creator's login.
    pub owner: String,
    /// The organization the codespace belongs to, if any.
    pub organization: Option<String>,
}

/// Someone who authenticated to reach a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Their login.
    pub login: String,
    /// Organizations they are a member of.
    pub organizations: Vec<String>,
    /// When they authenticated.
    pub authenticated_at: OffsetDateTime,
}

/// Why a connection to a port is refused (stable kebab-case codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum PortDenyReason {
    /// Private or org port and nobody authenticated.
    AuthenticationRequired,
    /// Authenticated 3 hours or more before now.
    AuthenticationExpired,
    /// Authenticated more than 60 s in the future.
    AuthenticationInvalid,
    /// Private port and the principal is not the owner.
    NotOwner,
    /// Org port and the principal is neither the owner nor a member of the organization.
    NotOrganizationMember,
}

impl ReasonCode for PortDenyReason {
    fn code(&self) -> &'static str {
        match self {
            Self::AuthenticationRequired => "authentication-required",
            Self::AuthenticationExpired => "authentication-expired",
            Self::AuthenticationInvalid => "authentication-invalid",
            Self::NotOwner => "not-owner",
            Self::NotOrganizationMember => "not-organization-member",
        }
    }
}

/// The outcome of [`port_access`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortAccess {
    /// Allow or deny.
    pub decision: Decision<PortDenyReason>,
    /// The visibility that was enforced.
    pub effective_visibility: Visibility,
}

/// The visibility actually enforced for a port set to `set` (see the module docs).
pub fn effective_visibility(
    codespace: &CodespaceIdentity,
    set: Visibility,
    allowed: AllowedVisibilities,
) -> Visibility {
    let clamped = allowed.clamp(set);
    if clamped == Visibility::Org && codespace.organization.is_none() {
        Visibility::Private
    } else {
        clamped
    }
}

/// Decides whether `principal` may reach a port set to `visibility` at `now`.
pub fn port_access(
    codespace: &CodespaceIdentity,
    visibility: Visibility,
    principal: Option<&Principal>,
    now: OffsetDateTime,
    allowed: AllowedVisibilities,
) -> PortAccess {
    let effective = effective_visibility(codespace, visibility, allowed);
    PortAccess {
        decision: decide(codespace, effective, principal, now),
        effective_visibility: effective,
    }
}

fn decide(
    codespace: &CodespaceIdentity,
    effective: Visibility,
    principal: Option<&Principal>,
    now: OffsetDateTime,
) -> Decision<PortDenyReason> {
    if effective == Visibility::Public {
        return Decision::Allow;
    }
    let Some(principal) = principal else {
        return Decision::Deny(PortDenyReason::AuthenticationRequired);
    };
    // `checked_add` because `now` near the end of the representable range must not panic;
    // nothing can lie beyond that end, so no authentication time is "in the future" then.
    if now
        .checked_add(CLOCK_SKEW)
        .is_some_and(|limit| principal.authenticated_at > limit)
    {
        return Decision::Deny(PortDenyReason::AuthenticationInvalid);
    }
    if now - principal.authenticated_at >= AUTHENTICATION_LIFETIME {
        return Decision::Deny(PortDenyReason::AuthenticationExpired);
    }
    let is_owner = same_login(&principal.login, &codespace.owner);
    match effective {
        Visibility::Private if is_owner => Decision::Allow,
        Visibility::Private => Decision::Deny(PortDenyReason::NotOwner),
        _ => {
            let member = codespace
                .organization
                .as_deref()
                .is_some_and(|org| principal.organizations.iter().any(|o| same_login(o, org)));
            if is_owner || member {
                Decision::Allow
            } else {
                Decision::Deny(PortDenyReason::NotOrganizationMember)
            }
        }
    }
}

/// A connection the agent may forward: the port and the visibility it was allowed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardGrant {
    /// The port.
    pub port: u16,
    /// The effective visibility the decision was made under.
    pub visibility: Visibility,
    /// The registry epoch of the port at decision time; a different epoch means the grant is
    /// stale and live connections must be cut.
    pub epoch: u64,
}

/// Checks access to a port known to a registry and returns the proof the forwarder needs.
pub fn authorize_forward(
    registry: &crate::registry::PortRegistry,
    port: u16,
    codespace: &CodespaceIdentity,
    principal: Option<&Principal>,
    now: OffsetDateTime,
) -> Result<Authorized<ForwardGrant>, ForwardDenyReason> {
    let state = registry.get(port).ok_or(ForwardDenyReason::UnknownPort)?;
    let access = port_access(
        codespace,
        state.visibility,
        principal,
        now,
        registry.allowed(),
    );
    match access.decision {
        Decision::Allow => Ok(Authorized::new(ForwardGrant {
            port,
            visibility: access.effective_visibility,
            epoch: state.epoch,
        })),
        Decision::Deny(reason) => Err(ForwardDenyReason::Access(reason)),
    }
}

/// Why [`authorize_forward`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardDenyReason {
    /// The port is not in the registry.
    #[error("unknown-port")]
    UnknownPort,
    /// The visibility does not admit the principal.
    #[error("{}", .0.code())]
    Access(PortDenyReason),
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-01-01 12:00 UTC);

    fn codespace(org: Option<&str>) -> CodespaceIdentity {
        CodespaceIdentity {
            owner: "Mona".into(),
            organization: org.map(str::to_owned),
        }
    }

    fn who(login: &str, orgs: &[&str], at: OffsetDateTime) -> Principal {
        Principal {
            login: login.into(),
            organizations: orgs.iter().map(|s| (*s).to_owned()).collect(),
            authenticated_at: at,
        }
    }

    #[test]
    fn effective_visibility_table() {
        use Visibility::*;
        let only_org = AllowedVisibilities::from_list(&[Org]);
        let only_public = AllowedVisibilities::from_list(&[Public]);
        let table = [
            (Some("octo"), Public, AllowedVisibilities::ALL, Public),
            (Some("octo"), Public, only_org, Org),
            (None, Public, only_org, Private),
            (Some("octo"), Org, only_public, Private),
            (
                Some("octo"),
                Public,
                AllowedVisibilities::PRIVATE_ONLY,
                Private,
            ),
            (None, Org, AllowedVisibilities::ALL, Private),
            (Some("octo"), Private, AllowedVisibilities::ALL, Private),
        ];
        for (org, set, allowed, want) in table {
            assert_eq!(
                effective_visibility(&codespace(org), set, allowed),
                want,
                "{org:?} {set:?} {allowed:?}"
            );
        }
    }

    #[test]
    fn access_table() {
        use PortDenyReason::*;
        use Visibility::*;
        let fresh = NOW - Duration::hours(1);
        let table: Vec<(Visibility, Option<Principal>, Decision<PortDenyReason>)> = vec![
            (Public, None, Decision::Allow),
            (Private, None, Decision::Deny(AuthenticationRequired)),
            (Org, None, Decision::Deny(AuthenticationRequired)),
            (Private, Some(who("mona", &[], fresh)), Decision::Allow),
            (
                Private,
                Some(who("hubot", &["octo"], fresh)),
                Decision::Deny(NotOwner),
            ),
            (Org, Some(who("hubot", &["OCTO"], fresh)), Decision::Allow),
            (Org, Some(who("MONA", &[], fresh)), Decision::Allow),
            (
                Org,
                Some(who("hubot", &["other"], fresh)),
                Decision::Deny(NotOrganizationMember),
            ),
            (
                Private,
                Some(who("mona", &[], NOW - Duration::hours(3))),
                Decision::Deny(AuthenticationExpired),
            ),
            (
                Private,
                Some(who(
                    "mona",
                    &[],
                    NOW - Duration::hours(3) + Duration::SECOND,
                )),
                Decision::Allow,
            ),
            (
                Private,
                Some(who("mona", &[], NOW + Duration::seconds(60))),
                Decision::Allow,
            ),
            (
                Private,
                Some(who("mona", &[], NOW + Duration::seconds(61))),
                Decision::Deny(AuthenticationInvalid),
            ),
        ];
        for (vis, principal, want) in table {
            let got = port_access(
                &codespace(Some("octo")),
                vis,
                principal.as_ref(),
                NOW,
                AllowedVisibilities::ALL,
            );
            assert_eq!(got.decision, want, "{vis:?} {principal:?}");
        }
    }

    #[test]
    fn reason_codes_match_serde() {
        use PortDenyReason::*;
        for r in [
            AuthenticationRequired,
            AuthenticationExpired,
            AuthenticationInvalid,
            NotOwner,
            NotOrganizationMember,
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.code());
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn principal() -> impl Strategy<Value = Option<Principal>> {
            let login = prop::sample::select(vec!["mona", "MONA", "hubot", "x"]);
            let orgs =
                prop::collection::vec(prop::sample::select(vec!["octo", "OCTO", "other"]), 0..3);
            let offset = -20_000i64..200;
            prop::option::of(
                (login, orgs, offset).prop_map(|(login, orgs, offset)| Principal {
                    login: login.to_owned(),
                    organizations: orgs.into_iter().map(str::to_owned).collect(),
                    authenticated_at: NOW + Duration::seconds(offset),
                }),
            )
        }

        proptest! {
            /// Deny by default: without a principal only a public port is reachable; an allowed
            /// private/org connection always has a fresh authentication of the owner or a member;
            /// the effective visibility never exceeds the one set or the policy.
            #[test]
            fn deny_by_default(
                set in prop::sample::select(Visibility::ALL.to_vec()),
                org in prop::option::of(prop::sample::select(vec!["octo", "Octo"])),
                allow_org in any::<bool>(),
                allow_public in any::<bool>(),
                who in principal(),
            ) {
                let mut list = Vec::new();
                if allow_org { list.push(Visibility::Org); }
                if allow_public { list.push(Visibility::Public); }
                let allowed = AllowedVisibilities::from_list(&list);
                let cs = codespace(org);
                let out = port_access(&cs, set, who.as_ref(), NOW, allowed);
                prop_assert!(out.effective_visibility <= set);
                prop_assert!(allowed.allows(out.effective_visibility));
                if out.decision.is_allow() && out.effective_visibility != Visibility::Public {
                    let p = who.as_ref().unwrap();
                    prop_assert!(NOW - p.authenticated_at < AUTHENTICATION_LIFETIME);
                    prop_assert!(p.authenticated_at <= NOW + CLOCK_SKEW);
                    let owner = p.login.eq_ignore_ascii_case("mona");
                    let member = cs.organization.as_deref().is_some_and(|o| p.organizations.iter().any(|x| x.eq_ignore_ascii_case(o)));
                    prop_assert!(owner || (out.effective_visibility == Visibility::Org && member));
                }
                if who.is_none() {
                    prop_assert_eq!(out.decision.is_allow(), out.effective_visibility == Visibility::Public);
                }
            }
        }
    }
}
