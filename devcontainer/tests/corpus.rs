//! Every real-world file of the shared corpus must parse with zero errors: if one does not,
//! the model is wrong, not the file.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // test output

use std::path::PathBuf;

/// `../shared/corpus` next to the workspace root (`/work/main` → `/work/shared`); a git worktree
/// one level deeper (`/work/wt/<name>`) finds the same folder one more level up.
fn corpus_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = ["../../shared", "../../../shared"];
    candidates
        .iter()
        .map(|c| manifest.join(c).join("corpus/devcontainer/real"))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| {
            manifest
                .join(candidates[0])
                .join("corpus/devcontainer/real")
        })
}

#[test]
fn every_real_file_parses_without_errors() {
    let dir = corpus_dir();
    if !dir.is_dir() {
        println!(
            "note: corpus folder {} does not exist; skipping",
            dir.display()
        );
        return;
    }
    let mut failures = Vec::new();
    let mut count = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".json") {
            continue;
        }
        count += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        let diagnostics = if name.ends_with("devcontainer-feature.json") {
            codespace_devcontainer::parse_feature(&text).diagnostics()
        } else {
            codespace_devcontainer::parse_devcontainer(&text).diagnostics()
        };
        for d in diagnostics {
            failures.push(format!("{name}: {d}"));
        }
    }
    assert!(count >= 50, "only {count} corpus files found");
    assert!(
        failures.is_empty(),
        "{} errors:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
