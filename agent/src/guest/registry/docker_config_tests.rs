//! The merge's table and the writer's attacks (symbolic links, hard links, FIFOs, someone
//! else's directory), on real files in a temporary directory. The attacks that need a second
//! uid run as root.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

use serde_json::json;

use super::*;
use crate::guest::sandbox::root_gate::root;

fn hosts(names: &[&str]) -> Vec<RegistryHost> {
    names
        .iter()
        .map(|n| RegistryHost::parse(n).unwrap())
        .collect()
}

fn merged(existing: Option<&str>, names: &[&str]) -> Merged {
    merge("config.json", existing.map(str::as_bytes), &hosts(names)).unwrap()
}

fn json_of(m: &Merged) -> serde_json::Value {
    serde_json::from_slice(m.contents.as_deref().unwrap()).unwrap()
}

#[test]
fn the_merge_keeps_every_key_and_the_users_own_entries() {
    let users = r#"{
        "auths": {"ghcr.io": {"auth": "dXNlcjpwYXNz"}, "quay.io": {}},
        "credHelpers": {"gcr.io": "gcloud", "registry.example": "pass", "old.example": "codespace"},
        "psFormat": "table {{.ID}}",
        "proxies": {"default": {"httpProxy": "http://proxy:3128"}}
    }"#;
    let m = merged(
        Some(users),
        &["ghcr.io", "https://registry.example/", "docker.io"],
    );
    let v = json_of(&m);
    assert_eq!(
        v["auths"],
        json!({"ghcr.io": {"auth": "dXNlcjpwYXNz"}, "quay.io": {}})
    );
    assert_eq!(v["psFormat"], "table {{.ID}}");
    assert_eq!(v["proxies"]["default"]["httpProxy"], "http://proxy:3128");
    assert_eq!(
        v["credHelpers"],
        json!({
            "gcr.io": "gcloud",
            "registry.example": "pass",
            "ghcr.io": "codespace",
            "https://index.docker.io/v1/": "codespace"
        })
    );
    assert_eq!(m.report.added, ["ghcr.io", "https://index.docker.io/v1/"]);
    assert_eq!(m.report.removed, ["old.example"]);
    assert_eq!(m.report.kept_users_helper, ["registry.example"]);
    // The user's key order is kept, and the file is written as Docker writes it.
    let text = String::from_utf8(m.contents.unwrap()).unwrap();
    let at = |k: &str| text.find(k).unwrap();
    assert!(at("\"auths\"") < at("\"credHelpers\"") && at("\"credHelpers\"") < at("\"psFormat\""));
    assert!(text.starts_with("{\n\t\"auths\""), "{text}");
}

#[test]
fn the_users_values_come_back_as_they_were() {
    // Found by the registry fuzz target: without exact float parsing a number came back one
    // unit in the last place off.
    let users = r#"{"auts": 888888888811111111111111111111111111118889, "f": 8.888888888111111e+38, "n": -0.1, "big": 18446744073709551615}"#;
    let v = json_of(&merged(Some(users), &["ghcr.io"]));
    let before: serde_json::Value = serde_json::from_str(users).unwrap();
    for key in ["auts", "f", "n", "big"] {
        assert_eq!(v[key], before[key], "{key}");
    }
}

#[test]
fn nothing_changes_when_nothing_is_to_change() {
    let ours = r#"{"credHelpers": {"ghcr.io": "codespace"}}"#;
    let m = merged(Some(ours), &["ghcr.io"]);
    assert_eq!(m.contents, None);
    assert!(!m.report.written);
    // No registries and no file: no file is made.
    assert_eq!(merged(None, &[]).contents, None);
    // An empty file counts as `{}` (Docker reads it so).
    assert_eq!(
        json_of(&merged(Some(" \n"), &["ghcr.io"])),
        json!({"credHelpers": {"ghcr.io": "codespace"}})
    );
    // The last registry removed: the agent's key goes, and `credHelpers` with it only if the
    // agent made it.
    assert_eq!(
        json_of(&merged(Some(ours), &[])),
        json!({"credHelpers": {}})
    );
    let m = merge("c", None, &hosts(&["ghcr.io"])).unwrap();
    let again = merge("c", m.contents.as_deref(), &[]).unwrap();
    assert_eq!(json_of(&again), json!({"credHelpers": {}}));
}

#[test]
fn a_file_that_is_not_a_docker_config_is_refused_not_clobbered() {
    for (text, want) in [
        ("{\"auths\": {", "not valid JSON (line 1, column 11)"),
        ("{\n \"a\": 1,\n}", "not valid JSON (line 3"),
        ("[1, 2]", "the file is not a JSON object"),
        (
            "{\"credHelpers\": [\"ghcr.io\"]}",
            "credHelpers is not a JSON object",
        ),
    ] {
        let err = merge(
            "/home/u/.docker/config.json",
            Some(text.as_bytes()),
            &hosts(&["ghcr.io"]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(want) && err.contains("/home/u/.docker/config.json"),
            "{text}: {err}"
        );
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn sync_creates_the_directory_and_file_for_the_owner_and_is_idempotent() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join(".docker");
    let owner = Owner::current();
    // No registries and no directory: nothing is created.
    let r = sync(&dir, owner, &[]).unwrap();
    assert!(!r.written && !dir.exists());
    let r = sync(&dir, owner, &hosts(&["ghcr.io"])).unwrap();
    assert!(r.written);
    assert_eq!(r.path, dir.join("config.json"));
    let meta = std::fs::symlink_metadata(&dir).unwrap();
    assert!(meta.is_dir() && meta.permissions().mode() & 0o777 == 0o700);
    let file = std::fs::symlink_metadata(dir.join("config.json")).unwrap();
    assert_eq!(file.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&read(&dir.join("config.json"))).unwrap(),
        json!({"credHelpers": {"ghcr.io": "codespace"}})
    );
    let again = sync(&dir, owner, &hosts(&["ghcr.io"])).unwrap();
    assert!(!again.written);
    // The user's mode is kept on a rewrite; no temporary file is left behind.
    std::fs::set_permissions(
        dir.join("config.json"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    sync(&dir, owner, &hosts(&["quay.io"])).unwrap();
    let mode = std::fs::metadata(dir.join("config.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["config.json"]);
}

#[test]
fn an_invalid_file_is_left_byte_for_byte() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join(".docker");
    std::fs::create_dir(&dir).unwrap();
    let broken = "{\"auths\": {\"ghcr.io\": {\"auth\": \"x\"}}, oops";
    std::fs::write(dir.join("config.json"), broken).unwrap();
    let err = sync(&dir, Owner::current(), &hosts(&["ghcr.io"])).unwrap_err();
    assert!(
        matches!(err, DockerConfigError::InvalidJson { .. }),
        "{err}"
    );
    assert_eq!(read(&dir.join("config.json")), broken);
}

/// A decoy standing in for `/etc/shadow` (the real one is never put at risk by a test): a file
/// outside the home that the writer must neither read nor write.
fn decoy(dir: &Path) -> PathBuf {
    let path = dir.join("shadow");
    std::fs::write(&path, "root:$6$decoy-hash:19000:0:99999:7:::\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn a_symlinked_config_json_is_refused_and_its_target_untouched() {
    let home = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let shadow = decoy(elsewhere.path());
    let dir = home.path().join(".docker");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::symlink(&shadow, dir.join("config.json")).unwrap();
    let err = sync(&dir, Owner::current(), &hosts(&["ghcr.io"]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is a symbolic link") && err.contains("config.json"),
        "{err}"
    );
    assert!(!err.contains("decoy-hash"), "{err}");
    assert_eq!(read(&shadow), "root:$6$decoy-hash:19000:0:99999:7:::\n");
    assert!(std::fs::symlink_metadata(dir.join("config.json"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn a_symlinked_docker_directory_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), home.path().join(".docker")).unwrap();
    let err = sync(
        &home.path().join(".docker"),
        Owner::current(),
        &hosts(&["ghcr.io"]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("symbolic link or not a directory"), "{err}");
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
}

#[test]
fn a_fifo_does_not_block_the_writer() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join(".docker");
    std::fs::create_dir(&dir).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        dir.join("config.json"),
        FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let err = sync(&dir, Owner::current(), &hosts(&["ghcr.io"]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not a regular file"), "{err}");
}

/// A home owned by a uid that is not root's, made by root for the test.
const USER: Owner = Owner {
    uid: 64_993,
    gid: 64_993,
};

fn users_home() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(home.path(), Some(USER.uid), Some(USER.gid)).unwrap();
    home
}

#[test]
fn as_root_the_files_made_are_the_users_and_a_hard_link_to_roots_file_is_refused_unread() {
    if !root() {
        return;
    }
    let home = users_home();
    let dir = home.path().join(".docker");
    sync(&dir, USER, &hosts(&["ghcr.io"])).unwrap();
    for p in [dir.clone(), dir.join("config.json")] {
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!((m.uid(), m.gid()), (USER.uid, USER.gid), "{}", p.display());
    }
    // The user swaps config.json for a hard link to a root-owned file (root may make one even
    // where protected_hardlinks stops the user: the writer must not rely on that).
    let elsewhere = tempfile::tempdir().unwrap();
    let shadow = decoy(elsewhere.path());
    std::fs::remove_file(dir.join("config.json")).unwrap();
    std::fs::hard_link(&shadow, dir.join("config.json")).unwrap();
    let err = sync(&dir, USER, &hosts(&["quay.io"]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not owned by the codespace user"), "{err}");
    assert!(!err.contains("decoy-hash"), "{err}");
    assert_eq!(read(&shadow), "root:$6$decoy-hash:19000:0:99999:7:::\n");
    assert_eq!(std::fs::metadata(&shadow).unwrap().nlink(), 2);
}

#[test]
fn as_root_a_docker_directory_of_someone_else_is_refused() {
    if !root() {
        return;
    }
    let home = users_home();
    let dir = home.path().join(".docker");
    std::fs::create_dir(&dir).unwrap(); // root's, inside the user's home
    let err = sync(&dir, USER, &hosts(&["ghcr.io"]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not owned by the codespace user"), "{err}");
    assert!(!dir.join("config.json").exists());
}

#[test]
fn the_docker_directory_comes_from_the_config_or_the_users_home() {
    let passwd = "root:x:0:0::/root:/bin/sh\nvscode:x:1000:1000::/home/vscode:/bin/bash\nnohome:x:1001:1001:::/bin/sh\n";
    let user = |uid| Owner { uid, gid: uid };
    assert_eq!(
        config_dir(None, passwd, user(1000)).unwrap(),
        PathBuf::from("/home/vscode/.docker")
    );
    assert_eq!(
        config_dir(Some(Path::new("/srv/docker")), passwd, user(1000)).unwrap(),
        PathBuf::from("/srv/docker")
    );
    for uid in [1001, 4242] {
        let err = config_dir(None, passwd, user(uid)).unwrap_err().to_string();
        assert!(err.contains("no home directory"), "{err}");
    }
}
