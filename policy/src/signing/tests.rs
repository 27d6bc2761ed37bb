//! The signing decision as a table: every row a session, a request and the answer.

#![allow(clippy::unwrap_used)]

use super::*;

const COMMIT: &str = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\
author A <a@example.com> 1700000000 +0000\n\
committer Mona <Mona@GitHub.example> 1700000000 +0000\n\
\n\
signed\n";

const TAG: &str = "object 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\
type commit\n\
tag v1\n\
tagger Mona <mona@github.example> 1700000000 +0000\n\
\n\
v1\n";

fn settings(mode: &str, trusted: &[&str], emails: &[&str]) -> SigningSettings {
    RawSigningSettings {
        mode: Some(mode.into()),
        trusted: trusted.iter().map(|s| (*s).to_owned()).collect(),
        verified_emails: emails.iter().map(|s| (*s).to_owned()).collect(),
    }
    .build()
    .unwrap()
}

fn facts(repository: Option<&str>, prebuild: bool) -> SigningFacts {
    SigningFacts {
        repository: repository.map(|r| RepoName::parse(r).unwrap()),
        prebuild,
    }
}

/// (what, settings, facts, format, payload, expected code or `None` for allowed)
type Row = (
    &'static str,
    SigningSettings,
    SigningFacts,
    SigningFormat,
    Vec<u8>,
    Option<&'static str>,
);

#[test]
fn the_decision_table() {
    let on = settings("ssh", &["octo/app", "tools/*"], &["mona@github.example"]);
    let pgp = settings("openpgp", &["octo/app"], &["mona@github.example"]);
    let in_scope = facts(Some("Octo/App"), false);
    let ssh = SigningFormat::Ssh;
    let rows: Vec<Row> = vec![
        (
            "a commit in scope",
            on.clone(),
            in_scope.clone(),
            ssh,
            COMMIT.as_bytes().to_vec(),
            None,
        ),
        (
            "a tag in scope",
            on.clone(),
            in_scope.clone(),
            ssh,
            TAG.as_bytes().to_vec(),
            None,
        ),
        (
            "owner/* covers the owner's repositories",
            on.clone(),
            facts(Some("TOOLS/lint"), false),
            ssh,
            COMMIT.as_bytes().to_vec(),
            None,
        ),
        (
            "openpgp session, openpgp request",
            pgp.clone(),
            in_scope.clone(),
            SigningFormat::OpenPgp,
            COMMIT.as_bytes().to_vec(),
            None,
        ),
        (
            "off by default",
            SigningSettings::default(),
            in_scope.clone(),
            ssh,
            COMMIT.as_bytes().to_vec(),
            Some("signing-off"),
        ),
        (
            "explicitly off",
            settings("off", &["octo/app"], &["mona@github.example"]),
            in_scope.clone(),
            ssh,
            COMMIT.as_bytes().to_vec(),
            Some("signing-off"),
        ),
        (
            "a prebuild",
            on.clone(),
            facts(Some("octo/app"), true),
            ssh,
            COMMIT.as_bytes().to_vec(),
            Some("prebuild"),
        ),
        (
            "git asks for the other format",
            on.clone(),
            in_scope.clone(),
            SigningFormat::OpenPgp,
            COMMIT.as_bytes().to_vec(),
            Some("wrong-format"),
        ),
        (
            "no repository known",
            on.clone(),
            facts(None, false),
            ssh,
            COMMIT.as_bytes().to_vec(),
            Some("no-repository"),
        ),
        (
            "a repository not trusted",
            on.clone(),
            facts(Some("octo/other"), false),
            ssh,
            COMMIT.as_bytes().to_vec(),
            Some("repository-not-trusted"),
        ),
        (
            "another owner's repository of the same name",
            on.clone(),
            facts(Some("evil/app"), false),
            ssh,
            COMMIT.as_bytes().to_vec(),
            Some("repository-not-trusted"),
        ),
        (
            "nothing trusted",
            settings("ssh", &[], &["mona@github.example"]),
            in_scope.clone(),
            ssh,
            COMMIT.as_bytes().to_vec(),
            Some("repository-not-trusted"),
        ),
        (
            "a blob",
            on.clone(),
            in_scope.clone(),
            ssh,
            b"just some file\n".to_vec(),
            Some("not-a-commit-or-tag"),
        ),
        (
            "an SSH challenge",
            on.clone(),
            in_scope.clone(),
            ssh,
            b"SSHSIG\0\0\0\x01".to_vec(),
            Some("not-a-commit-or-tag"),
        ),
        (
            "an unverified committer",
            on.clone(),
            in_scope.clone(),
            ssh,
            COMMIT
                .replace("Mona@GitHub.example", "mallory@evil.example")
                .as_bytes()
                .to_vec(),
            Some("unverified-email"),
        ),
        (
            "the author's email does not count",
            settings("ssh", &["octo/app"], &["a@example.com"]),
            in_scope.clone(),
            ssh,
            COMMIT.as_bytes().to_vec(),
            Some("unverified-email"),
        ),
        (
            "an unverified tagger",
            on.clone(),
            in_scope.clone(),
            ssh,
            TAG.replace("mona@", "eve@").as_bytes().to_vec(),
            Some("unverified-email"),
        ),
        (
            "no verified email at all",
            settings("ssh", &["octo/app"], &[]),
            in_scope.clone(),
            ssh,
            COMMIT.as_bytes().to_vec(),
            Some("unverified-email"),
        ),
    ];
    let now = Instant::now();
    for (what, s, f, format, payload, expected) in rows {
        let mut limiter = RateLimiter::default();
        let got = decide(&s, &f, format, &payload, &mut limiter, now);
        match (expected, got) {
            (None, Ok(approved)) => {
                assert_eq!(approved.format, format, "{what}");
                assert_eq!(limiter.recent(now), 1, "{what}: an allowed request counts");
            }
            (Some(code), Err(refusal)) => {
                assert_eq!(refusal.code(), code, "{what}: {refusal}");
                assert_eq!(limiter.recent(now), 0, "{what}: a refusal does not count");
                let text = refusal.to_string();
                assert!(!text.is_empty() && !text.contains('\n'), "{what}: {text:?}");
            }
            (expected, got) => panic!("{what}: expected {expected:?}, got {got:?}"),
        }
    }
}

#[test]
fn at_most_sixty_a_minute_and_refused_ones_do_not_count() {
    let on = settings("ssh", &["octo/app"], &["mona@github.example"]);
    let f = facts(Some("octo/app"), false);
    let t0 = Instant::now();
    let mut limiter = RateLimiter::default();
    for i in 0..MAX_PER_WINDOW {
        // A refused request in between takes no place.
        let refused = decide(&on, &f, SigningFormat::Ssh, b"blob", &mut limiter, t0);
        assert!(refused.is_err());
        let at = t0 + Duration::from_millis(i as u64 * 100);
        assert!(
            decide(
                &on,
                &f,
                SigningFormat::Ssh,
                COMMIT.as_bytes(),
                &mut limiter,
                at
            )
            .is_ok(),
            "{i}"
        );
    }
    let late = t0 + Duration::from_secs(30);
    let refusal = decide(
        &on,
        &f,
        SigningFormat::Ssh,
        COMMIT.as_bytes(),
        &mut limiter,
        late,
    )
    .unwrap_err();
    assert_eq!(refusal, SigningRefusal::RateLimited { retry_after_s: 30 });
    // The first admission leaves the window a minute after it was made.
    let after = t0 + RATE_WINDOW;
    assert!(decide(
        &on,
        &f,
        SigningFormat::Ssh,
        COMMIT.as_bytes(),
        &mut limiter,
        after
    )
    .is_ok());
    assert!(decide(
        &on,
        &f,
        SigningFormat::Ssh,
        COMMIT.as_bytes(),
        &mut limiter,
        after
    )
    .is_err());
    assert_eq!(limiter.recent(t0 + RATE_WINDOW * 3), 0);
}

#[test]
fn enabled_answers_the_session_only_checks() {
    let on = settings("openpgp", &["octo/*"], &[]);
    assert_eq!(
        on.enabled(&facts(Some("octo/app"), false)).unwrap().0,
        SigningFormat::OpenPgp
    );
    for (f, code) in [
        (facts(Some("octo/app"), true), "prebuild"),
        (facts(None, false), "no-repository"),
        (facts(Some("other/app"), false), "repository-not-trusted"),
    ] {
        assert_eq!(on.enabled(&f).unwrap_err().code(), code);
    }
    assert_eq!(
        SigningSettings::default()
            .enabled(&facts(Some("octo/app"), false))
            .unwrap_err(),
        SigningRefusal::Off
    );
}

#[test]
fn settings_are_parsed_strictly_and_errors_name_the_field() {
    let raw = |mode: &str, trusted: &[&str], emails: &[&str]| RawSigningSettings {
        mode: Some(mode.into()),
        trusted: trusted.iter().map(|s| (*s).to_owned()).collect(),
        verified_emails: emails.iter().map(|s| (*s).to_owned()).collect(),
    };
    assert_eq!(
        RawSigningSettings::default().build().unwrap().mode,
        SigningMode::Off
    );
    for (bad, needle) in [
        (raw("gpg", &[], &[]), "mode"),
        (raw("ssh", &["octo/app", "no-slash"], &[]), "trusted[1]"),
        (raw("ssh", &["*/*"], &[]), "trusted[0]"),
        (
            raw("ssh", &[], &["a@b", "not-an-email"]),
            "verified_emails[1]",
        ),
        (raw("ssh", &[], &["a b@c"]), "verified_emails[0]"),
        (raw("ssh", &[], &["<a@b>"]), "verified_emails[0]"),
        (raw("ssh", &[], &["a@b@c"]), "verified_emails[0]"),
    ] {
        let text = bad.build().unwrap_err().to_string();
        assert!(text.starts_with(needle), "{text}");
    }
    let many = vec!["a@b".to_owned(); MAX_LIST + 1];
    let too_many = RawSigningSettings {
        verified_emails: many,
        ..Default::default()
    };
    assert!(too_many.build().is_err());
    // Unknown fields are refused on the wire.
    let err = serde_json::from_str::<RawSigningSettings>(r#"{"mode":"ssh","trusted_repos":[]}"#);
    assert!(err.is_err());
    assert!(VerifiedEmail::parse("Mona@GitHub.example")
        .unwrap()
        .matches("mona@github.EXAMPLE"));
}
