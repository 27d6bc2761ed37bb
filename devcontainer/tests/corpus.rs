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

fn load(name: &str) -> Option<codespace_devcontainer::DevContainer> {
    let path = corpus_dir().join(name);
    if !path.is_file() {
        println!("note: {name} not in corpus; skipping");
        return None;
    }
    let parsed =
        codespace_devcontainer::parse_devcontainer(&std::fs::read_to_string(path).unwrap());
    assert!(parsed.is_ok(), "{name}: {:?}", parsed.diagnostics());
    parsed.model
}

/// Spot checks that the model reads the notable traits of real files (SOURCES.tsv) right.
#[test]
fn notable_traits_are_modelled() {
    use codespace_devcontainer::model::features::FeatureRef;
    use codespace_devcontainer::model::host::GpuRequirement;
    use codespace_devcontainer::model::lifecycle::{Command, LifecycleCommand};
    use codespace_devcontainer::model::ports::AppPort;
    use codespace_devcontainer::model::source::ContainerSource;

    if let Some(m) = load("dapr__dapr__.devcontainer__devcontainer.json") {
        assert!(m
            .mounts
            .iter()
            .any(|x| x.source.as_deref() == Some("/var/run/docker.sock")));
        assert!(m.run_args.iter().any(|a| a.value == "--privileged"));
        assert!(m.workspace_mount.is_some());
    }
    if let Some(m) = load("github__docs__.devcontainer__devcontainer.json") {
        assert!(m
            .features
            .iter()
            .any(|f| matches!(f.reference, FeatureRef::Legacy { .. })));
        assert!(!m.customizations.vscode.unwrap().extensions.is_empty());
    }
    if let Some(m) = load("rapidsai__cudf__.devcontainer__cuda12.9-conda__devcontainer.json") {
        let gpu = m.host_requirements.unwrap().value.gpu.unwrap().value;
        assert_eq!(gpu, GpuRequirement::Optional);
        let init = m.lifecycle.initialize.unwrap();
        assert!(matches!(
            init.value,
            LifecycleCommand::Single(Command::Exec(_))
        ));
    }
    if let Some(m) = load("home-assistant__core__.devcontainer__devcontainer.json") {
        assert!(matches!(m.app_port[0].value, AppPort::Port(_)));
        assert_eq!(m.source(), ContainerSource::Dockerfile);
        assert!(m.build.unwrap().legacy);
    }
    if let Some(m) = load("devcontainers__images__src__universal__.devcontainer__devcontainer.json")
    {
        assert!(m
            .features
            .iter()
            .any(|f| matches!(f.reference, FeatureRef::Local { .. })));
        assert!(!m.override_feature_install_order.is_empty());
    }
    if let Some(m) = load("python__cpython__.devcontainer__devcontainer.json") {
        assert!(matches!(
            m.lifecycle.on_create.unwrap().value,
            LifecycleCommand::Single(Command::Exec(_))
        ));
        assert!(matches!(
            m.lifecycle.post_create.unwrap().value,
            LifecycleCommand::Parallel(_)
        ));
    }
    if let Some(m) = load("github__codespaces-jupyter__.devcontainer__devcontainer.json") {
        // empty-string postCreateCommand is absent, as the CLI treats it
        assert!(m.lifecycle.post_create.is_none());
        assert!(m.wait_for.is_some());
    }
    if let Some(m) = load("openai__codex__.devcontainer__devcontainer.json") {
        assert!(m.schema.is_some());
        assert!(m.unknown.is_empty(), "{:?}", m.unknown);
    }
    if let Some(m) =
        load("microsoft__generative-ai-for-beginners__.devcontainer__devcontainer.json")
    {
        // the postCreateCommand misplaced inside customizations.vscode is not the one that runs
        let pc = m.lifecycle.post_create.unwrap();
        assert_eq!(pc.pointer, "/postCreateCommand");
        assert_eq!(
            pc.commands()[0].1.argv()[2],
            "bash .devcontainer/post-create.sh"
        );
    }
}
