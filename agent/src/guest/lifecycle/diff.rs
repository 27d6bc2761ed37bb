//! What changed between two versions of a devcontainer.json, by security relevance (pure).
//!
//! Both versions are compared as JSON values of the raw tree (comments, whitespace and key
//! order do not count; a duplicate key counts as its effective last value). Every top-level
//! property belongs to one [`Area`]; two nested paths have their own areas because they grant
//! something on their own: `customizations.vscode.extensions` (code installed into the editor)
//! and `customizations.codespaces.repositories` (token permissions). The rest of
//! `customizations` and unknown properties are cosmetic.
//!
//! A rebuild is needed when what the VM or container is built from changes: image/build,
//! features, mounts/runArgs/privileges, `containerEnv` and `containerUser`.

use serde::Serialize;
use serde_json::{Map, Value};

/// A security-relevant area of the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub(crate) enum Area {
    /// `initializeCommand` … `postAttachCommand`, `waitFor`.
    LifecycleCommands,
    /// `features`, `overrideFeatureInstallOrder`.
    Features,
    /// Extensions to install.
    Extensions,
    /// `forwardPorts`, `portsAttributes`, `otherPortsAttributes`, `appPort`.
    Ports,
    /// `mounts`, `workspaceMount`, `runArgs`, `privileged`, `capAdd`, `securityOpt`, `init`.
    MountsRunArgsPrivileges,
    /// `customizations.codespaces.repositories`.
    RepositoryPermissions,
    /// `image`, `build`, compose files.
    ImageAndBuild,
    /// `containerEnv`, `remoteEnv`, `containerUser`, `remoteUser`, `updateRemoteUserUID`,
    /// `userEnvProbe`, `secrets`.
    UserAndEnvironment,
    /// `hostRequirements`.
    HostRequirements,
}

fn area_of(key: &str) -> Option<Area> {
    use Area::*;
    Some(match key {
        "initializeCommand"
        | "onCreateCommand"
        | "updateContentCommand"
        | "postCreateCommand"
        | "postStartCommand"
        | "postAttachCommand"
        | "waitFor" => LifecycleCommands,
        "features" | "overrideFeatureInstallOrder" => Features,
        "extensions" => Extensions,
        "forwardPorts" | "portsAttributes" | "otherPortsAttributes" | "appPort" | "devPort" => {
            Ports
        }
        "mounts" | "workspaceMount" | "runArgs" | "privileged" | "capAdd" | "securityOpt"
        | "init" | "workspaceFolder" => MountsRunArgsPrivileges,
        "image" | "build" | "dockerFile" | "context" | "dockerComposeFile" | "service"
        | "runServices" | "overrideCommand" => ImageAndBuild,
        "containerEnv"
        | "remoteEnv"
        | "containerUser"
        | "remoteUser"
        | "updateRemoteUserUID"
        | "userEnvProbe"
        | "secrets" => UserAndEnvironment,
        "hostRequirements" => HostRequirements,
        _ => return None,
    })
}

/// Keys whose change needs a rebuild.
fn needs_rebuild(key: &str) -> bool {
    matches!(
        area_of(key),
        Some(Area::ImageAndBuild | Area::Features | Area::MountsRunArgsPrivileges)
    ) || matches!(
        key,
        "containerEnv" | "containerUser" | "updateRemoteUserUID"
    )
}

/// The result of [`diff`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub(crate) struct ConfigDiff {
    /// Security-relevant areas that changed (sorted, unique).
    pub(crate) security_relevant: Vec<Area>,
    /// Cosmetic properties that changed (JSON pointers, sorted).
    pub(crate) cosmetic: Vec<String>,
    /// Every changed property (JSON pointers, sorted).
    pub(crate) changed: Vec<String>,
    /// Whether the change takes a rebuild to apply.
    pub(crate) rebuild_required: bool,
}

impl ConfigDiff {
    /// Nothing changed.
    pub(crate) fn is_empty(&self) -> bool {
        self.changed.is_empty()
    }
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, k| cur.get(*k))
}

/// `customizations` without the two nested paths that have their own areas.
fn customizations_rest(v: &Value) -> Option<Value> {
    let mut c = v.get("customizations")?.clone();
    if let Some(vs) = c.get_mut("vscode").and_then(Value::as_object_mut) {
        vs.remove("extensions");
    }
    if let Some(cs) = c.get_mut("codespaces").and_then(Value::as_object_mut) {
        cs.remove("repositories");
    }
    // What only held the removed paths is no change of its own.
    let m = c.as_object_mut()?;
    m.retain(|k, v| {
        !(matches!(k.as_str(), "vscode" | "codespaces") && v == &Value::Object(Map::new()))
    });
    (!m.is_empty()).then_some(c)
}

/// Compares two configurations (JSON objects of the raw trees).
pub(crate) fn diff(old: &Value, new: &Value) -> ConfigDiff {
    let empty = Map::new();
    let (a, b) = (
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
    );
    let mut out = ConfigDiff::default();
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let mark = |out: &mut ConfigDiff, pointer: String, area: Option<Area>, rebuild: bool| {
        match area {
            Some(area) => out.security_relevant.push(area),
            None => out.cosmetic.push(pointer.clone()),
        }
        out.rebuild_required |= rebuild;
        out.changed.push(pointer);
    };
    for k in keys {
        if k == "customizations" {
            continue;
        }
        if a.get(k) != b.get(k) {
            mark(&mut out, format!("/{k}"), area_of(k), needs_rebuild(k));
        }
    }
    let nested = [
        (
            &["customizations", "vscode", "extensions"][..],
            Area::Extensions,
        ),
        (
            &["customizations", "codespaces", "repositories"][..],
            Area::RepositoryPermissions,
        ),
    ];
    for (path, area) in nested {
        if get(old, path) != get(new, path) {
            mark(&mut out, format!("/{}", path.join("/")), Some(area), false);
        }
    }
    if customizations_rest(old) != customizations_rest(new) {
        mark(&mut out, "/customizations".into(), None, false);
    }
    out.security_relevant.sort();
    out.security_relevant.dedup();
    out.cosmetic.sort();
    out.changed.sort();
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cosmetic_changes_need_nothing() {
        let d = diff(
            &json!({"name": "a", "customizations": {"vscode": {"settings": {"x": 1}}}}),
            &json!({"name": "b", "customizations": {"vscode": {"settings": {"x": 2}}}}),
        );
        assert!(d.security_relevant.is_empty());
        assert_eq!(d.cosmetic, ["/customizations", "/name"]);
        assert!(!d.rebuild_required);
    }

    #[test]
    fn table_of_areas() {
        let cases: Vec<(Value, Value, Vec<Area>, bool)> = vec![
            (
                json!({"postCreateCommand": "a"}),
                json!({"postCreateCommand": "b"}),
                vec![Area::LifecycleCommands],
                false,
            ),
            (
                json!({}),
                json!({"features": {"x": {}}}),
                vec![Area::Features],
                true,
            ),
            (
                json!({}),
                json!({"customizations": {"vscode": {"extensions": ["a.b"]}}}),
                vec![Area::Extensions],
                false,
            ),
            (
                json!({"forwardPorts": [1]}),
                json!({"forwardPorts": [2]}),
                vec![Area::Ports],
                false,
            ),
            (
                json!({}),
                json!({"privileged": true}),
                vec![Area::MountsRunArgsPrivileges],
                true,
            ),
            (
                json!({"runArgs": []}),
                json!({"runArgs": ["--net=host"]}),
                vec![Area::MountsRunArgsPrivileges],
                true,
            ),
            (
                json!({}),
                json!({"customizations": {"codespaces": {"repositories": {"o/r": {"permissions": "write-all"}}}}}),
                vec![Area::RepositoryPermissions],
                false,
            ),
            (
                json!({"image": "a"}),
                json!({"image": "b"}),
                vec![Area::ImageAndBuild],
                true,
            ),
            (
                json!({"remoteEnv": {}}),
                json!({"remoteEnv": {"A": "1"}}),
                vec![Area::UserAndEnvironment],
                false,
            ),
            (
                json!({}),
                json!({"containerEnv": {"A": "1"}}),
                vec![Area::UserAndEnvironment],
                true,
            ),
        ];
        for (old, new, areas, rebuild) in cases {
            let d = diff(&old, &new);
            assert_eq!(d.security_relevant, areas, "{old} -> {new}");
            assert_eq!(d.rebuild_required, rebuild, "{old} -> {new}");
            assert!(d.cosmetic.is_empty(), "{old} -> {new}: {d:?}");
        }
    }

    #[test]
    fn no_change_is_empty_and_several_areas_are_sorted() {
        let v = json!({"image": "a", "customizations": {"vscode": {"extensions": ["x.y"]}}});
        assert!(diff(&v, &v).is_empty());
        let d = diff(
            &json!({"postStartCommand": "a", "mounts": []}),
            &json!({"postStartCommand": "b", "mounts": ["source=/,target=/h,type=bind"], "name": "n"}),
        );
        assert_eq!(
            d.security_relevant,
            [Area::LifecycleCommands, Area::MountsRunArgsPrivileges]
        );
        assert_eq!(d.changed, ["/mounts", "/name", "/postStartCommand"]);
        assert!(d.rebuild_required);
    }
}
