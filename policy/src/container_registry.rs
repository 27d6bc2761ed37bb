//! Container registry credentials: which registry a Docker server URL names, whether a delivery
//! from the host is acceptable, and whether a credential helper's request is answered.
//!
//! ```text
//!  host: registry put ghcr.io ──► check_delivery ──► Authorized<RegistryHost> ──► vault holds it
//!  docker: get "https://ghcr.io" ──► decide(prebuild?, parse, exact match, expiry)
//!                                         └─► Authorized<RegistryHost> ──► answered
//! ```
//!
//! **Which registry a server URL names** ([`RegistryHost::parse`]) follows Docker's own
//! normalisation (`ConvertToHostname` in the Docker CLI): an `http://` or `https://` prefix is
//! dropped and everything from the first `/` on is ignored, so `https://ghcr.io`, `ghcr.io` and
//! `ghcr.io/v2/` all name `ghcr.io`. The rest must be a plain host with an optional port
//! ([`crate::host`]); `ghcr.io.evil.com` is another host and `evil.com/ghcr.io` names
//! `evil.com`, so neither ever matches `ghcr.io`. Docker Hub's aliases (`docker.io`,
//! `index.docker.io`, `registry-1.docker.io`) are one registry, whose key in Docker's
//! `credHelpers` is `https://index.docker.io/v1/` ([`RegistryHost::config_key`]).
//!
//! **Answering** ([`decide`]), first failure wins: nothing at all while the codespace is a
//! prebuild (`prebuild`: registry credentials are off in prebuilds, like secrets), a server URL
//! that names no registry (`invalid-server-url`), no credential for exactly that registry
//! (`unknown-registry`), a credential whose expiry has passed (`expired`). Who asks (the
//! codespace user, never a restricted run) is the broker's admission, decided before this.
//!
//! **Deliveries** ([`check_delivery`]): refused in a prebuild; the registry must parse; the
//! username is 1–256 printable characters; the secret 1–16 KiB of printable characters (it is
//! sent inside a JSON string, and a control character in a token is a mistake); the expiry in
//! the future; the optional scope a valid owner (user or organization) name; at most
//! [`MAX_REGISTRIES`] registries at once.

use serde::Serialize;
use time::OffsetDateTime;

use crate::decision::{Authorized, ReasonCode};

/// Docker Hub's registry, as [`RegistryHost::parse`] spells every alias of it.
pub const DOCKER_HUB: &str = "index.docker.io";

/// Docker Hub's key in `credHelpers` (and `auths`): the Docker CLI looks it up by this URL.
pub const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";

/// Most registries a codespace holds credentials for at once.
pub const MAX_REGISTRIES: usize = 32;

/// Longest username accepted.
pub const MAX_USERNAME_BYTES: usize = 256;

/// Longest secret accepted (registry tokens are far shorter).
pub const MAX_SECRET_BYTES: usize = 16 * 1024;

/// A registry, named the one way Docker names it: a lower-case host with an optional port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RegistryHost(String);

/// Why a server URL names no registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryHostError {
    /// Nothing but white space.
    #[error("the server URL is empty")]
    Empty,
    /// A scheme other than `http` or `https`.
    #[error("the server URL's scheme is not http or https")]
    UnsupportedScheme,
    /// `user@host`: a credential helper is asked for a host, never for a user at a host.
    #[error("the server URL carries user information (`user@`)")]
    UserInfo,
    /// The host part is not a plain host with an optional port.
    #[error("the server URL's host is not a plain host name with an optional :port")]
    InvalidHost,
}

impl RegistryHost {
    /// The registry `server_url` names, normalised as Docker does (see the module docs).
    pub fn parse(server_url: &str) -> Result<Self, RegistryHostError> {
        let text = server_url.trim();
        if text.is_empty() {
            return Err(RegistryHostError::Empty);
        }
        let rest = match text.split_once("://") {
            Some((scheme, rest))
                if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http") =>
            {
                rest
            }
            Some(_) => return Err(RegistryHostError::UnsupportedScheme),
            None => text,
        };
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.contains('@') {
            return Err(RegistryHostError::UserInfo);
        }
        let host = crate::host::normalize(authority).ok_or(RegistryHostError::InvalidHost)?;
        Ok(Self(match host.as_str() {
            "docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_owned(),
            _ => host,
        }))
    }

    /// The host (`ghcr.io`, `registry.example:5000`, `index.docker.io`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key Docker looks this registry up by in `credHelpers`: the host, except for Docker
    /// Hub's legacy URL.
    pub fn config_key(&self) -> &str {
        if self.0 == DOCKER_HUB {
            DOCKER_HUB_CONFIG_KEY
        } else {
            &self.0
        }
    }
}

impl std::fmt::Display for RegistryHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a credential helper's request is not answered (stable kebab-case codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RegistryRefusal {
    /// The codespace is a prebuild: registry credentials are off.
    Prebuild,
    /// The server URL names no registry.
    InvalidServerUrl,
    /// No credential for exactly this registry.
    UnknownRegistry,
    /// The credential for this registry has expired.
    Expired,
}

impl ReasonCode for RegistryRefusal {
    fn code(&self) -> &'static str {
        match self {
            Self::Prebuild => "prebuild",
            Self::InvalidServerUrl => "invalid-server-url",
            Self::UnknownRegistry => "unknown-registry",
            Self::Expired => "expired",
        }
    }
}

/// A credential the vault holds, as the decision sees it (no secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held<'a> {
    /// Its registry.
    pub host: &'a RegistryHost,
    /// When it stops being answered.
    pub expires_at: OffsetDateTime,
}

/// Decides a helper's `get` for `server_url` against the credentials `held` (see the module
/// docs for the order of the checks).
pub fn decide<'a>(
    server_url: &str,
    prebuild: bool,
    held: impl IntoIterator<Item = Held<'a>>,
    now: OffsetDateTime,
) -> Result<Authorized<RegistryHost>, RegistryRefusal> {
    if prebuild {
        return Err(RegistryRefusal::Prebuild);
    }
    let host = RegistryHost::parse(server_url).map_err(|_| RegistryRefusal::InvalidServerUrl)?;
    let found = held
        .into_iter()
        .find(|h| *h.host == host)
        .ok_or(RegistryRefusal::UnknownRegistry)?;
    if now >= found.expires_at {
        return Err(RegistryRefusal::Expired);
    }
    Ok(Authorized::new(host))
}

/// Why a delivery from the host is refused (stable kebab-case codes, with what is wrong; never
/// the secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryRefusal {
    /// The codespace is a prebuild.
    #[error("registry credentials are off in prebuilds")]
    Prebuild,
    /// The registry does not parse.
    #[error("registry {registry:?}: {reason}")]
    InvalidRegistry {
        /// As delivered.
        registry: String,
        /// Why.
        reason: RegistryHostError,
    },
    /// The username is empty, too long or holds a control character.
    #[error("username: must be 1 to {MAX_USERNAME_BYTES} bytes without control characters")]
    InvalidUsername,
    /// The secret is empty, too long or holds a control character.
    #[error("secret: must be 1 to {MAX_SECRET_BYTES} bytes of UTF-8 without control characters")]
    InvalidSecret,
    /// The expiry is not in the future.
    #[error("expires_at is not in the future")]
    Expired,
    /// The scope is not an owner name.
    #[error("scope {scope:?}: not a user or organization name")]
    InvalidScope {
        /// As delivered.
        scope: String,
    },
    /// A new registry beyond [`MAX_REGISTRIES`].
    #[error("more than {MAX_REGISTRIES} registries")]
    TooManyRegistries,
}

impl ReasonCode for DeliveryRefusal {
    fn code(&self) -> &'static str {
        match self {
            Self::Prebuild => "prebuild",
            Self::InvalidRegistry { .. } => "invalid-registry",
            Self::InvalidUsername => "invalid-username",
            Self::InvalidSecret => "invalid-secret",
            Self::Expired => "expired",
            Self::InvalidScope { .. } => "invalid-scope",
            Self::TooManyRegistries => "too-many-registries",
        }
    }
}

/// One delivery: what the host sends (sealing the secret) and the vault checks (after opening
/// it). `Debug` shows everything but the secret.
#[derive(Clone, Copy)]
pub struct Delivery<'a> {
    /// The registry, in any form [`RegistryHost::parse`] takes.
    pub registry: &'a str,
    /// The username Docker gets.
    pub username: &'a str,
    /// The secret (only its length and characters are looked at).
    pub secret: &'a [u8],
    /// When it stops being answered.
    pub expires_at: OffsetDateTime,
    /// The owner whose packages it reaches, if the host says.
    pub scope: Option<&'a str>,
}

impl std::fmt::Debug for Delivery<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .field(
                "secret",
                &format_args!("<redacted {} bytes>", self.secret.len()),
            )
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .finish()
    }
}

/// Checks a delivery; `held` are the registries held now (a delivery for one of them replaces
/// it and does not count against [`MAX_REGISTRIES`]).
pub fn check_delivery<'a>(
    delivery: &Delivery<'_>,
    prebuild: bool,
    held: impl IntoIterator<Item = &'a RegistryHost>,
    now: OffsetDateTime,
) -> Result<Authorized<RegistryHost>, DeliveryRefusal> {
    if prebuild {
        return Err(DeliveryRefusal::Prebuild);
    }
    let host = RegistryHost::parse(delivery.registry).map_err(|reason| {
        DeliveryRefusal::InvalidRegistry {
            registry: delivery.registry.to_owned(),
            reason,
        }
    })?;
    let printable = |s: &str| !s.chars().any(char::is_control);
    let username = delivery.username;
    if username.is_empty() || username.len() > MAX_USERNAME_BYTES || !printable(username) {
        return Err(DeliveryRefusal::InvalidUsername);
    }
    let secret_ok = !delivery.secret.is_empty()
        && delivery.secret.len() <= MAX_SECRET_BYTES
        && std::str::from_utf8(delivery.secret).is_ok_and(printable);
    if !secret_ok {
        return Err(DeliveryRefusal::InvalidSecret);
    }
    if delivery.expires_at <= now {
        return Err(DeliveryRefusal::Expired);
    }
    if let Some(scope) = delivery.scope {
        if !crate::repo::is_valid_owner(scope) {
            return Err(DeliveryRefusal::InvalidScope {
                scope: scope.to_owned(),
            });
        }
    }
    let mut count = 0;
    for h in held {
        if *h == host {
            return Ok(Authorized::new(host));
        }
        count += 1;
    }
    if count >= MAX_REGISTRIES {
        return Err(DeliveryRefusal::TooManyRegistries);
    }
    Ok(Authorized::new(host))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-11-25 19:00 UTC);
    const LATER: OffsetDateTime = datetime!(2026-11-26 03:00 UTC);

    fn host(s: &str) -> RegistryHost {
        RegistryHost::parse(s).unwrap()
    }

    #[test]
    fn server_urls_normalise_as_docker_does() {
        for (url, want) in [
            ("ghcr.io", "ghcr.io"),
            ("https://ghcr.io", "ghcr.io"),
            ("HTTPS://GHCR.IO/", "ghcr.io"),
            ("ghcr.io/v2/", "ghcr.io"),
            ("https://ghcr.io/v2/octo/app", "ghcr.io"),
            ("http://registry.example:5000", "registry.example:5000"),
            (" ghcr.io\n", "ghcr.io"),
            ("docker.io", DOCKER_HUB),
            ("registry-1.docker.io", DOCKER_HUB),
            ("https://index.docker.io/v1/", DOCKER_HUB),
        ] {
            assert_eq!(host(url).as_str(), want, "{url}");
        }
        assert_eq!(host("docker.io").config_key(), DOCKER_HUB_CONFIG_KEY);
        assert_eq!(host("https://ghcr.io/").config_key(), "ghcr.io");
    }

    #[test]
    fn server_urls_that_name_no_registry_are_refused_with_their_reason() {
        for (url, want) in [
            ("", RegistryHostError::Empty),
            ("  \n", RegistryHostError::Empty),
            ("ftp://ghcr.io", RegistryHostError::UnsupportedScheme),
            ("://ghcr.io", RegistryHostError::UnsupportedScheme),
            ("https://user@ghcr.io", RegistryHostError::UserInfo),
            ("ghcr.io@evil.com", RegistryHostError::UserInfo),
            ("https://", RegistryHostError::InvalidHost),
            ("/ghcr.io", RegistryHostError::InvalidHost),
            ("ghcr.io.", RegistryHostError::InvalidHost),
            ("ghcr.io:0", RegistryHostError::InvalidHost),
            ("ghcr.io?x=/", RegistryHostError::InvalidHost),
            ("ghcr%2eio", RegistryHostError::InvalidHost),
            ("ghcr.io\\evil", RegistryHostError::InvalidHost),
        ] {
            assert_eq!(RegistryHost::parse(url), Err(want), "{url:?}");
        }
    }

    /// The table of the helper's `get`: what is answered and why not.
    #[test]
    fn only_an_exact_live_registry_outside_a_prebuild_is_answered() {
        let held_hosts = [host("ghcr.io"), host("registry.example:5000")];
        let held = || {
            [
                Held {
                    host: &held_hosts[0],
                    expires_at: LATER,
                },
                Held {
                    host: &held_hosts[1],
                    expires_at: NOW,
                },
            ]
        };
        for (url, prebuild, want) in [
            ("ghcr.io", false, Ok("ghcr.io")),
            ("https://ghcr.io", false, Ok("ghcr.io")),
            ("ghcr.io/v2/", false, Ok("ghcr.io")),
            ("GHCR.io", false, Ok("ghcr.io")),
            ("ghcr.io", true, Err(RegistryRefusal::Prebuild)),
            (
                "ghcr.io.evil.com",
                false,
                Err(RegistryRefusal::UnknownRegistry),
            ),
            (
                "evil.com/ghcr.io",
                false,
                Err(RegistryRefusal::UnknownRegistry),
            ),
            (
                "https://evil.com/ghcr.io",
                false,
                Err(RegistryRefusal::UnknownRegistry),
            ),
            ("ghcr.io:443", false, Err(RegistryRefusal::UnknownRegistry)),
            ("xghcr.io", false, Err(RegistryRefusal::UnknownRegistry)),
            (
                "ghcr.io@evil.com",
                false,
                Err(RegistryRefusal::InvalidServerUrl),
            ),
            (
                "https://u@ghcr.io",
                false,
                Err(RegistryRefusal::InvalidServerUrl),
            ),
            ("", false, Err(RegistryRefusal::InvalidServerUrl)),
            (
                "registry.example:5000",
                false,
                Err(RegistryRefusal::Expired),
            ),
        ] {
            let got = decide(url, prebuild, held(), NOW).map(|a| a.into_inner());
            assert_eq!(got, want.map(host), "{url:?} prebuild={prebuild}");
        }
        // The last instant before the expiry is still answered.
        assert!(decide("ghcr.io", false, held(), LATER - time::Duration::SECOND).is_ok());
        assert_eq!(
            decide("ghcr.io", false, held(), LATER).unwrap_err(),
            RegistryRefusal::Expired
        );
    }

    fn delivery<'a>(registry: &'a str, secret: &'a [u8]) -> Delivery<'a> {
        Delivery {
            registry,
            username: "octocat",
            secret,
            expires_at: LATER,
            scope: Some("octo-org"),
        }
    }

    #[test]
    fn deliveries_are_checked_field_by_field() {
        let none: [&RegistryHost; 0] = [];
        let ok = check_delivery(&delivery("https://ghcr.io/", b"ghp_x"), false, none, NOW);
        assert_eq!(ok.unwrap().into_inner(), host("ghcr.io"));
        let refused =
            |d: Delivery<'_>, prebuild| check_delivery(&d, prebuild, none, NOW).unwrap_err().code();
        assert_eq!(refused(delivery("ghcr.io", b"x"), true), "prebuild");
        assert_eq!(
            refused(delivery("ftp://ghcr.io", b"x"), false),
            "invalid-registry"
        );
        assert_eq!(refused(delivery("ghcr.io", b""), false), "invalid-secret");
        assert_eq!(
            refused(delivery("ghcr.io", b"a\nb"), false),
            "invalid-secret"
        );
        assert_eq!(
            refused(delivery("ghcr.io", b"\xff"), false),
            "invalid-secret"
        );
        let long = vec![b'a'; MAX_SECRET_BYTES + 1];
        assert_eq!(refused(delivery("ghcr.io", &long), false), "invalid-secret");
        for username in ["", "a\tb", &"u".repeat(MAX_USERNAME_BYTES + 1)] {
            let d = Delivery {
                username,
                ..delivery("ghcr.io", b"x")
            };
            assert_eq!(refused(d, false), "invalid-username", "{username:?}");
        }
        let d = Delivery {
            expires_at: NOW,
            ..delivery("ghcr.io", b"x")
        };
        assert_eq!(refused(d, false), "expired");
        for scope in ["", "octo/app", "-x", "a b"] {
            let d = Delivery {
                scope: Some(scope),
                ..delivery("ghcr.io", b"x")
            };
            assert_eq!(refused(d, false), "invalid-scope", "{scope:?}");
        }
        // Neither its Debug nor a refusal's text carries the secret.
        assert!(!format!("{:?}", delivery("ghcr.io", b"s3cr\net")).contains("s3cr"));
        let text = check_delivery(&delivery("ghcr.io", b"s3cr\net"), false, none, NOW)
            .unwrap_err()
            .to_string();
        assert!(!text.contains("s3cr"), "{text}");
    }

    #[test]
    fn the_registry_count_is_bounded_but_a_replacement_is_not_a_new_one() {
        let held: Vec<RegistryHost> = (0..MAX_REGISTRIES)
            .map(|i| host(&format!("r{i}.example")))
            .collect();
        let d = delivery("new.example", b"x");
        assert_eq!(
            check_delivery(&d, false, &held, NOW).unwrap_err(),
            DeliveryRefusal::TooManyRegistries
        );
        assert!(check_delivery(&delivery("r3.example", b"x"), false, &held, NOW).is_ok());
    }
}
