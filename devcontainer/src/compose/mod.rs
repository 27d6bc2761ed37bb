//! Docker Compose files named by a devcontainer.json (`dockerComposeFile`): what the audit
//! needs to read them.
//!
//! ```text
//!  devcontainer.json ─ dockerComposeFile: ["a.yml", "b.yml"], service, runServices
//!         │ (the caller reads the files, relative to the devcontainer.json's folder)
//!         ▼
//!  ComposeInput { config_dir, files: [ComposeSource { path, name, text }] }
//!         │ yaml::parse each (marks, aliases, `<<` merge keys, bounded)
//!         ▼
//!  services merged across files in order ─▶ the services that start ─▶ audit::audit_compose
//! ```
//!
//! Like local features, the files are read by the caller and passed in: the library does no
//! I/O. A file the caller could not read is passed with the reason, and the audit reports it as
//! an error naming the path.
//!
//! Which services start: the devcontainers CLI runs `docker compose up` with `runServices` plus
//! `service`, or with no service names (every service) when `runServices` is not set; Compose
//! then also starts what those depend on (`depends_on`, `network_mode: service:x`,
//! `volumes_from`). All of those are audited.

pub mod interpolate;
pub mod yaml;

/// One Compose file named by `dockerComposeFile`, as the caller read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeSource {
    /// How reports name the file (typically the path the caller opened).
    pub path: String,
    /// The name as written in `dockerComposeFile` (relative to the devcontainer.json's folder).
    pub name: String,
    /// The file's text, or why it could not be read.
    pub text: Result<String, String>,
}

/// The Compose files of a configuration, in the order `dockerComposeFile` lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComposeInput {
    /// The devcontainer.json's folder relative to the workspace folder, `/`-separated
    /// (`.devcontainer`, `.devcontainer/app`, or empty for a `.devcontainer.json` at the root).
    /// Compose resolves relative paths against the first file's folder; this places that folder
    /// in the workspace, so `..` from `.devcontainer/` is the workspace and `../..` is outside.
    pub config_dir: String,
    /// The files, in order; later files override earlier ones as Compose merges them.
    pub files: Vec<ComposeSource>,
}
