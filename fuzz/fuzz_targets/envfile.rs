//! Fuzz the environment file as the shells read it: any names the policy accepts
//! (`codespace_policy::secrets::check_name`) with any values it accepts (no NUL, at most
//! 48 KiB), written by the agent's writer (`envfile::render`), sourced by every installed
//! shell the way the login hook does (`set -a; . FILE; set +a`), come back unchanged, run
//! nothing, and lose no later entry; the agent's own parser (`envfile::parse`, for `exec`)
//! reads the same pairs back.
//!
//! Input: `name NUL value NUL name NUL value ...` (a name or value that breaks the policy is
//! left out, as the vault refuses it; so is a second name that differs only in case).
#![no_main]

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use codespace_agent::guest::vault::envfile;
use codespace_fuzz::scratch;
use codespace_policy::secrets::{check_name, MAX_SECRET_BYTES};
use libfuzzer_sys::fuzz_target;

/// The shells that load the file (as `agent/src/guest/vault/envfile.rs`'s tests list them),
/// those installed here.
fn shells() -> &'static Vec<(&'static str, Vec<&'static str>)> {
    static S: OnceLock<Vec<(&'static str, Vec<&'static str>)>> = OnceLock::new();
    S.get_or_init(|| {
        [
            ("/bin/sh", vec![]),
            ("/bin/bash", vec![]),
            ("/usr/bin/zsh", vec![]),
            ("/usr/bin/zsh", vec!["--emulate", "sh"]),
            ("/usr/bin/ksh", vec![]),
            ("/usr/bin/mksh", vec![]),
        ]
        .into_iter()
        .filter(|(p, _)| Path::new(p).exists())
        .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let mut fields = data.split(|b| *b == 0);
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        if check_name(name, &[]).is_err()
            || value.len() > MAX_SECRET_BYTES
            || entries.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
            || name.eq_ignore_ascii_case("LATER")
        {
            continue;
        }
        entries.push((name.to_owned(), value.to_vec()));
        if entries.len() == 8 {
            break;
        }
    }
    if entries.is_empty() {
        return;
    }
    entries.push(("LATER".into(), b"ok".to_vec()));
    let contents = envfile::render(entries.iter().map(|(n, v)| (n.as_str(), v.as_slice())));
    let parsed = envfile::parse("fuzz", &contents).expect("the writer's output parses");
    assert_eq!(
        parsed.len(),
        entries.len(),
        "the writer left an accepted entry out"
    );
    for ((n, v), (pn, pv)) in entries.iter().zip(&parsed) {
        assert_eq!(n, pn);
        assert_eq!(v.as_slice(), pv.expose());
    }
    let dir = scratch().join("envfile");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("environment");
    let marker = dir.join("ran");
    std::fs::write(&file, &*contents).unwrap();
    // Each value, NUL-terminated, in order: names are `[A-Za-z0-9_]`, safe in the script.
    let print: String = entries
        .iter()
        .map(|(n, _)| format!(" \"${{{n}}}\""))
        .collect();
    let script = format!("set -a; . \"$1\"; set +a; printf '%s\\0'{print}");
    for (shell, args) in shells() {
        let out = Command::new(shell)
            .args(args)
            .arg("-c")
            .arg(&script)
            .arg("sh")
            .arg(&file)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("MARKER", &marker)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(!marker.exists(), "{shell} {args:?} ran something");
        let got: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
        for (i, (name, value)) in entries.iter().enumerate() {
            assert_eq!(
                got.get(i).copied(),
                Some(value.as_slice()),
                "{shell} {args:?}: {name} changed; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
});
