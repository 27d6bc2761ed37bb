//! Opening one secrets delivery into a set of environment entries (pure apart from decryption).
//!
//! Every sealed secret of a delivery is judged on its own, so one bad entry never loses the
//! others. The checks run cheapest first and the first failure is the entry's reason:
//!
//! ```text
//! too-many ─► duplicate-name ─► policy name check ─► open (unauthentic / malformed / too-large)
//!          ─► replay (replayed) ─► value size (too-large) ─► NUL byte (invalid-value) ─► accepted
//! ```
//!
//! A delivery is the complete set the codespace should have from the next `create`/`resume` on
//! (so a secret deleted on the host disappears at that point); rejected entries are simply absent
//! from it. Names are case-insensitive, as GitHub's are: two entries of one delivery whose names
//! differ only in case are both refused (`duplicate-name`), since nothing says which is meant.

use std::collections::{BTreeMap, HashMap};

use codespace_policy::secrets::{
    check_name, dangerous_reason, SecretNameRejection, MAX_SECRETS_PER_LEVEL, MAX_SECRET_BYTES,
};
use codespace_policy::ReasonCode as _;
use serde::Serialize;

use crate::seal::{AgentKeyPair, ReplayGuard, SealedSecret, SecretValue};

/// Most secrets one delivery may carry: three levels (user, repository, organization) of at
/// most 100 each.
pub(crate) const MAX_SECRETS_PER_DELIVERY: usize = 3 * MAX_SECRETS_PER_LEVEL;

/// One secret in the vault: its name as delivered and its value.
#[derive(Debug, Clone)]
pub(crate) struct SecretEntry {
    /// The name as delivered (case preserved).
    pub(crate) name: String,
    /// The plaintext.
    pub(crate) value: SecretValue,
}

/// A set of secrets keyed by the upper-cased name.
pub(crate) type SecretSet = BTreeMap<String, SecretEntry>;

/// A refused secret: its name, a stable code and a message (never the value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct SecretRejection {
    /// The name as delivered.
    pub(crate) name: String,
    /// Stable kebab-case code: `too-many`, `duplicate-name`, `invalid-name`,
    /// `starts-with-digit`, `reserved-prefix`, `dangerous-name`, `malformed`, `unauthentic`,
    /// `invalid-public-key`, `replayed`, `too-large`, `invalid-value`, `internal`, `prebuild`.
    pub(crate) reason: String,
    /// A human-readable explanation.
    pub(crate) message: String,
}

/// The answer to a secrets delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SecretsReport {
    /// Names accepted (pending until the next `create`/`resume`), in delivery order.
    pub accepted: Vec<String>,
    /// Entries refused, in delivery order.
    pub(crate) rejected: Vec<SecretRejection>,
}

fn reject(name: &str, reason: &str, message: String) -> SecretRejection {
    SecretRejection {
        name: name.to_owned(),
        reason: reason.to_owned(),
        message,
    }
}

/// The message for a refused name: the name (the field), the code and why. For a
/// `dangerous-name` the why is the deny-list entry's own reason (issue 16: a name like `RANDOM`
/// is refused because a shell evaluates its value, and the sender should be told so).
fn name_message(name: &str, rejection: SecretNameRejection) -> String {
    let code = rejection.code();
    let why = match rejection {
        SecretNameRejection::DangerousName => {
            dangerous_reason(name).unwrap_or("in the organization's secrets.deny_names")
        }
        SecretNameRejection::ReservedPrefix => "names starting with GITHUB_ are reserved",
        SecretNameRejection::StartsWithDigit => "a variable name cannot start with a digit",
        SecretNameRejection::InvalidName => "only ASCII letters, digits and _ are allowed",
        // The enum is non-exhaustive: a rule added later still gets its code.
        _ => "see the secrets rules of the policy",
    };
    format!("secret name {name:?} refused by policy: {code}: {why}")
}

/// The report of a delivery refused as a whole (`reason`, e.g. `prebuild`): every entry is
/// rejected with the same code and message, nothing is opened.
pub fn refuse_all(delivery: &[SealedSecret], reason: &str, message: &str) -> SecretsReport {
    SecretsReport {
        accepted: Vec::new(),
        rejected: delivery
            .iter()
            .map(|s| reject(&s.name, reason, message.to_owned()))
            .collect(),
    }
}

/// Judges each sealed secret of `delivery`; returns the accepted set and the report. Accepted
/// generations are recorded in `replay`; every authentic ephemeral key is recorded too.
pub(crate) fn open_delivery(
    keys: &AgentKeyPair,
    replay: &mut ReplayGuard,
    extra_deny: &[String],
    delivery: Vec<SealedSecret>,
) -> (SecretSet, SecretsReport) {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for sealed in &delivery {
        *counts.entry(sealed.name.to_ascii_uppercase()).or_default() += 1;
    }
    let mut set = SecretSet::new();
    let mut report = SecretsReport::default();
    for (index, sealed) in delivery.into_iter().enumerate() {
        let name = sealed.name.as_str();
        let folded = name.to_ascii_uppercase();
        if index >= MAX_SECRETS_PER_DELIVERY {
            report.rejected.push(reject(
                name,
                "too-many",
                format!("a delivery holds at most {MAX_SECRETS_PER_DELIVERY} secrets"),
            ));
            continue;
        }
        if counts.get(&folded).copied().unwrap_or(0) > 1 {
            report.rejected.push(reject(
                name,
                "duplicate-name",
                format!("secret {name:?} appears more than once (names are case-insensitive)"),
            ));
            continue;
        }
        if let Err(rejection) = check_name(name, extra_deny) {
            report.rejected.push(reject(
                name,
                rejection.code(),
                name_message(name, rejection),
            ));
            continue;
        }
        let value = match keys.open(&sealed) {
            Ok(value) => value,
            Err(err) => {
                report
                    .rejected
                    .push(reject(name, err.code(), err.to_string()));
                continue;
            }
        };
        if let Err(err) = replay.check(&sealed) {
            report
                .rejected
                .push(reject(name, err.code(), err.to_string()));
            continue;
        }
        replay.record_ephemeral(&sealed);
        if value.len() > MAX_SECRET_BYTES {
            report.rejected.push(reject(
                name,
                "too-large",
                format!(
                    "secret {name:?} is {} bytes, more than {MAX_SECRET_BYTES}",
                    value.len()
                ),
            ));
            continue;
        }
        if value.expose().contains(&0) {
            report.rejected.push(reject(
                name,
                "invalid-value",
                format!(
                    "secret {name:?} contains a NUL byte, which no environment variable can hold"
                ),
            ));
            continue;
        }
        replay.record(&sealed);
        report.accepted.push(sealed.name.clone());
        set.insert(
            folded,
            SecretEntry {
                name: sealed.name,
                value,
            },
        );
    }
    (set, report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::seal::seal;

    fn codes(report: &SecretsReport) -> Vec<(&str, &str)> {
        report
            .rejected
            .iter()
            .map(|r| (r.name.as_str(), r.reason.as_str()))
            .collect()
    }

    #[test]
    fn one_bad_secret_never_loses_the_others() {
        let keys = AgentKeyPair::generate().unwrap();
        let other = AgentKeyPair::generate().unwrap();
        let mut replay = ReplayGuard::new();
        let pk = keys.public_key();
        let mut tampered = seal(&pk, "TAMPERED", 1, b"x").unwrap();
        tampered.generation = 2;
        let delivery = vec![
            seal(&pk, "GOOD_ONE", 1, b"one").unwrap(),
            seal(&pk, "LD_PRELOAD", 1, b"/evil.so").unwrap(),
            seal(&pk, "GITHUB_TOKEN", 1, b"x").unwrap(),
            seal(&pk, "9LIVES", 1, b"x").unwrap(),
            seal(&pk, "DENIED_BY_ORG", 1, b"x").unwrap(),
            tampered,
            seal(&other.public_key(), "WRONG_KEY", 1, b"x").unwrap(),
            seal(&pk, "BIG", 1, &vec![b'a'; MAX_SECRET_BYTES + 1]).unwrap(),
            seal(&pk, "NUL", 1, b"a\0b").unwrap(),
            seal(&pk, "Dup", 1, b"a").unwrap(),
            seal(&pk, "DUP", 1, b"b").unwrap(),
            seal(&pk, "GOOD_TWO", 1, b"two").unwrap(),
        ];
        let (set, report) = open_delivery(&keys, &mut replay, &["DENIED_*".to_owned()], delivery);
        assert_eq!(report.accepted, ["GOOD_ONE", "GOOD_TWO"]);
        assert_eq!(
            codes(&report),
            [
                ("LD_PRELOAD", "dangerous-name"),
                ("GITHUB_TOKEN", "reserved-prefix"),
                ("9LIVES", "starts-with-digit"),
                ("DENIED_BY_ORG", "dangerous-name"),
                ("TAMPERED", "unauthentic"),
                ("WRONG_KEY", "unauthentic"),
                ("BIG", "too-large"),
                ("NUL", "invalid-value"),
                ("Dup", "duplicate-name"),
                ("DUP", "duplicate-name"),
            ]
        );
        assert_eq!(set["GOOD_TWO"].value.expose(), b"two");
        for rejection in &report.rejected {
            assert!(!rejection.message.contains("evil"));
        }
    }

    #[test]
    fn replays_are_refused_across_deliveries() {
        let keys = AgentKeyPair::generate().unwrap();
        let mut replay = ReplayGuard::new();
        let first = seal(&keys.public_key(), "API", 3, b"v3").unwrap();
        let (_, report) = open_delivery(&keys, &mut replay, &[], vec![first.clone()]);
        assert_eq!(report.accepted, ["API"]);
        let stale = seal(&keys.public_key(), "api", 3, b"old").unwrap();
        let (set, report) = open_delivery(&keys, &mut replay, &[], vec![first]);
        assert!(set.is_empty());
        assert_eq!(codes(&report), [("API", "replayed")]);
        let (set, report) = open_delivery(&keys, &mut replay, &[], vec![stale]);
        assert!(set.is_empty());
        assert_eq!(codes(&report), [("api", "replayed")]);
    }

    #[test]
    fn a_rejected_value_does_not_burn_its_generation() {
        let keys = AgentKeyPair::generate().unwrap();
        let mut replay = ReplayGuard::new();
        let nul = seal(&keys.public_key(), "A", 5, b"\0").unwrap();
        let (_, report) = open_delivery(&keys, &mut replay, &[], vec![nul]);
        assert_eq!(codes(&report), [("A", "invalid-value")]);
        let fixed = seal(&keys.public_key(), "A", 5, b"ok").unwrap();
        let (set, _) = open_delivery(&keys, &mut replay, &[], vec![fixed]);
        assert_eq!(set["A"].value.expose(), b"ok");
    }

    #[test]
    fn deliveries_are_bounded() {
        let keys = AgentKeyPair::generate().unwrap();
        let mut replay = ReplayGuard::new();
        let delivery: Vec<_> = (0..=MAX_SECRETS_PER_DELIVERY)
            .map(|i| seal(&keys.public_key(), &format!("S{i}"), 1, b"v").unwrap())
            .collect();
        let (set, report) = open_delivery(&keys, &mut replay, &[], delivery);
        assert_eq!(set.len(), MAX_SECRETS_PER_DELIVERY);
        assert_eq!(
            codes(&report),
            [(format!("S{MAX_SECRETS_PER_DELIVERY}").as_str(), "too-many")]
        );
    }
}
