//! Whole-document tests of the typed model on fixture files.
#![allow(clippy::unwrap_used)]

use codespace_devcontainer::model::features::FeatureRef;
use codespace_devcontainer::model::lifecycle::{Command, LifecycleCommand};
use codespace_devcontainer::model::mounts::MountType;
use codespace_devcontainer::model::ports::AppPort;
use codespace_devcontainer::{
    parse_devcontainer, ExtensionRef, RepoSelector, RepositoryPermissions,
};

#[test]
fn bom_and_crlf_positions_point_into_the_original_text() {
    let text = include_str!("fixtures/bom-crlf.json");
    let p = parse_devcontainer(text);
    assert!(p.had_bom);
    let d = p.diagnostics();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].pointer, "/forwardPorts/1");
    // line 5: `  "forwardPorts": [3000, 70000],` — 70000 starts at column 26
    assert_eq!((d[0].line, d[0].column), (5, 26));
    assert!(d[0].message.contains("1 to 65535"));
}

#[test]
fn hostile_document_is_fully_modelled() {
    let p = parse_devcontainer(include_str!("fixtures/hostile.jsonc"));
    assert!(p.is_ok(), "{:#?}", p.diagnostics());
    let m = p.model.as_ref().unwrap();
    // duplicate key via escape: effective value is the last
    assert!(m.privileged.as_ref().unwrap().value);
    assert_eq!(p.duplicate_keys.len(), 1);
    assert_eq!(p.duplicate_keys[0].key, "privileged");
    let first = p.locate(p.duplicate_keys[0].first);
    let dup = p.locate(p.duplicate_keys[0].duplicate);
    assert_eq!((first.line, dup.line), (5, 6));
    // lifecycle forms
    let init = m.lifecycle.initialize.as_ref().unwrap();
    assert_eq!(init.commands()[0].1.argv()[..2], ["/bin/sh", "-c"]);
    let LifecycleCommand::Parallel(entries) = &m.lifecycle.post_create.as_ref().unwrap().value
    else {
        panic!()
    };
    assert!(matches!(entries[0].command.value, Command::Exec(_)));
    // ports
    let AppPort::Publish(spec) = &m.app_port[0].value else {
        panic!()
    };
    assert!(spec.binds_all_interfaces());
    assert_eq!(m.app_port[2].value, AppPort::Port(3000));
    // mounts in both forms
    assert_eq!(m.mounts[0].source.as_deref(), Some("/var/run/docker.sock"));
    assert_eq!(m.mounts[0].kind, MountType::Bind);
    assert_eq!(m.mounts[1].ignored[0].value, "readonly");
    // env and secrets
    assert_eq!(m.container_env[1].name.value, "LD_PRELOAD");
    assert_eq!(m.remote_env[0].value.value, None);
    assert_eq!(m.secrets[0].name.value, "OPENAI_API_KEY");
    // features
    assert!(matches!(
        m.features[0].reference,
        FeatureRef::Tarball { .. }
    ));
    assert!(matches!(m.features[2].reference, FeatureRef::Local { .. }));
    // extensions and repositories
    let v = m.customizations.vscode.as_ref().unwrap();
    assert!(matches!(v.extensions[0].value, ExtensionRef::Remove(_)));
    assert!(matches!(v.extensions[2].value, ExtensionRef::Vsix(_)));
    let cs = m.customizations.codespaces.as_ref().unwrap();
    assert_eq!(cs.repositories[0].pattern.repo, RepoSelector::All);
    assert_eq!(
        cs.repositories[0].permissions.value,
        RepositoryPermissions::WriteAll
    );
    // unknown keys kept with pointers
    let unknown: Vec<_> = m.unknown.iter().map(|u| u.pointer.as_str()).collect();
    assert_eq!(unknown, ["/__proto__", "/postCreateCommmand"]);
    // every Located pointer resolves in the tree to the value it came from
    let tree = p.tree.as_ref().unwrap();
    assert_eq!(
        tree.resolve(&m.mounts[1].pointer)
            .unwrap()
            .get("target")
            .unwrap()
            .as_str(),
        Some("/root/.ssh")
    );
    assert_eq!(m.ports_attributes.len(), 2);
}

#[test]
fn every_semantic_error_is_collected_with_a_position() {
    let p = parse_devcontainer(include_str!("fixtures/errors.jsonc"));
    let d = p.diagnostics();
    let pointers: Vec<&str> = d.iter().map(|x| x.pointer.as_str()).collect();
    assert_eq!(
        pointers,
        [
            "", // image + dockerComposeFile
            "/forwardPorts/0",
            "/forwardPorts/1",
            "/forwardPorts/2",
            "/postCreateCommand",
            "/postStartCommand/a",
            "/customizations/vscode/extensions/0",
            "/customizations/vscode/extensions/1",
            "/customizations/codespaces/repositories/*~1*",
            "/customizations/codespaces/repositories/o~1r/permissions/packages",
            "/mounts/0",
            "/hostRequirements/gpu",
            "/waitFor",
            "/remoteEnv/A",
        ],
        "{d:#?}"
    );
    assert!(d.iter().all(|x| x.line > 0 && x.column > 0));
    assert!(d[0].message.contains("silently uses image"));
    assert!(d[6].message.contains("U+2011"));
    // the model keeps what was valid
    let m = p.model.unwrap();
    assert_eq!(m.forward_ports.len(), 1);
    assert_eq!(m.image.unwrap().value, "a");
}

#[test]
fn shipped_example_parses_cleanly() {
    let p = parse_devcontainer(include_str!("../examples/devcontainer.json"));
    assert!(p.is_ok(), "{:#?}", p.diagnostics());
    let m = p.model.unwrap();
    assert_eq!(m.features.len(), 3);
    assert_eq!(m.mounts[0].source.as_deref(), Some("/var/run/docker.sock"));
    assert!(m.lifecycle.initialize.is_some());
    assert!(m.unknown.is_empty());
}

#[test]
fn oversized_input_is_one_syntax_error_at_1_1() {
    let big = format!(
        "{{\"name\": \"{}\"}}",
        "x".repeat(codespace_devcontainer::MAX_INPUT_BYTES)
    );
    let p = parse_devcontainer(&big);
    let d = p.diagnostics();
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].line, d[0].column), (1, 1));
    assert!(d[0].message.contains("4 MiB"));
    assert!(p.model.is_none() && p.tree.is_none());
}
