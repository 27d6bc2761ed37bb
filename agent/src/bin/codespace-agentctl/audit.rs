//! `codespace-agentctl audit PATH...`: audit devcontainer.json files offline.
//!
//! ```text
//! PATH (file or folder) ─discover─▶ files ─read─▶ parse (devcontainer or feature)
//!   ─▶ resolve local features (./x → x/devcontainer-feature.json next to the file)
//!   ─▶ read the Compose files of `dockerComposeFile` (relative to the file)
//!   ─▶ audit ─▶ FileReport per file (and one per Compose file after it)
//!   ─▶ text | json | sarif on stdout ─▶ exit code
//! ```
//!
//! Exit codes: 0 every file parsed and no finding at or above `--fail-on`; 1 some finding at or
//! above it; 2 a file could not be read or is not a valid devcontainer.json (its errors are in
//! the output too; so does a Compose file that cannot be read). 2 wins over 1. A local feature whose folder is missing is not an error (the
//! `feature-source` finding says it was not audited); one that exists but is invalid is.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use codespace_devcontainer::audit::render::{self, FileReport, ReportError};
use codespace_devcontainer::audit::{self, AuditContext, LocalFeature, Severity};
use codespace_devcontainer::compose::{ComposeInput, ComposeSource};
use codespace_devcontainer::substitute::SubstitutionContext;
use codespace_devcontainer::{parse_devcontainer, parse_feature, Diagnostic};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `path:line:column severity rule message`, one line each.
    Text,
    /// One JSON object: `{"files":[{"path","findings","errors"}]}`.
    Json,
    /// SARIF 2.1.0 for GitHub code scanning.
    Sarif,
}

/// The `--fail-on` threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOn {
    /// Exit 1 when a finding is at or above this severity.
    AtLeast(Severity),
    /// Never exit 1 because of findings.
    Never,
}

fn parse_fail_on(value: &str) -> Result<FailOn, String> {
    if value == "never" {
        return Ok(FailOn::Never);
    }
    Severity::parse(value).map(FailOn::AtLeast).ok_or_else(|| {
        format!("{value:?} is not a severity; expected info, low, medium, high, critical or never")
    })
}

/// Arguments of `audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// devcontainer.json files, devcontainer-feature.json files, or folders (a folder means its
    /// .devcontainer/devcontainer.json, .devcontainer.json and .devcontainer/*/devcontainer.json).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Exit 1 when a finding is at or above this severity
    /// (info, low, medium, high, critical, or never).
    #[arg(long, value_name = "SEVERITY", default_value = "high", value_parser = parse_fail_on)]
    fail_on: FailOn,
}

/// File name that marks a feature's metadata.
const FEATURE_FILE: &str = "devcontainer-feature.json";

/// Runs the command and prints the report; returns the documented exit code.
pub fn run(args: &AuditArgs) -> ExitCode {
    let mut reports = Vec::new();
    for path in &args.paths {
        match discover(path) {
            Ok(files) => reports.extend(files.iter().flat_map(|f| audit_file(f))),
            Err(message) => reports.push(error_report(path, message)),
        }
    }
    let output = match args.format {
        Format::Text => render::text(&reports),
        Format::Json => render::json(&reports),
        Format::Sarif => render::sarif(&reports, env!("CARGO_PKG_VERSION")),
    };
    print!("{output}");
    exit_code(&reports, args.fail_on)
}

fn exit_code(reports: &[FileReport], fail_on: FailOn) -> ExitCode {
    if reports.iter().any(|r| !r.errors.is_empty()) {
        return ExitCode::from(2);
    }
    let failing = match fail_on {
        FailOn::Never => false,
        FailOn::AtLeast(threshold) => reports
            .iter()
            .flat_map(|r| &r.findings)
            .any(|f| f.severity >= threshold),
    };
    ExitCode::from(u8::from(failing))
}

/// The files a path stands for: itself, or the devcontainer.json files of a folder.
fn discover(path: &Path) -> Result<Vec<PathBuf>, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut found = Vec::new();
    let dot = path.join(".devcontainer");
    for candidate in [
        dot.join("devcontainer.json"),
        path.join(".devcontainer.json"),
    ] {
        if candidate.is_file() {
            found.push(candidate);
        }
    }
    if let Ok(entries) = std::fs::read_dir(&dot) {
        let mut nested: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path().join("devcontainer.json"))
            .filter(|p| p.is_file())
            .collect();
        nested.sort();
        found.extend(nested);
    }
    if found.is_empty() {
        return Err(format!(
            "no .devcontainer/devcontainer.json, .devcontainer.json or .devcontainer/*/devcontainer.json in folder {}",
            path.display()
        ));
    }
    Ok(found)
}

fn error_report(path: &Path, message: String) -> FileReport {
    FileReport {
        path: path.display().to_string(),
        findings: Vec::new(),
        errors: vec![ReportError {
            message,
            pointer: String::new(),
            line: 0,
            column: 0,
        }],
    }
}

fn to_errors(diagnostics: Vec<Diagnostic>) -> Vec<ReportError> {
    diagnostics
        .into_iter()
        .map(|d| ReportError {
            message: d.message,
            pointer: d.pointer,
            line: d.line as usize,
            column: d.column as usize,
        })
        .collect()
}

/// The report of one file, followed by one per Compose file it names.
fn audit_file(path: &Path) -> Vec<FileReport> {
    let text = match read_text(path) {
        Ok(text) => text,
        Err(message) => return vec![error_report(path, message)],
    };
    let shown = path.display().to_string();
    let is_feature = path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().ends_with(FEATURE_FILE));
    if is_feature {
        let parsed = parse_feature(&text);
        return vec![FileReport {
            path: shown,
            findings: audit::audit_feature(&parsed),
            errors: to_errors(parsed.diagnostics()),
        }];
    }
    let parsed = parse_devcontainer(&text);
    let mut errors = to_errors(parsed.diagnostics());
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut ctx = AuditContext {
        substitution: Some(SubstitutionContext {
            local_workspace_folder: workspace_folder(path),
            ..SubstitutionContext::default()
        }),
        ..AuditContext::default()
    };
    if let Some(model) = &parsed.model {
        for feature in &model.features {
            let key = &feature.key.value;
            if !(key.starts_with("./") || key.starts_with("../")) {
                continue;
            }
            let file = dir.join(key).join(FEATURE_FILE);
            match std::fs::read_to_string(&file) {
                Ok(feature_text) => {
                    let parsed_feature = parse_feature(&feature_text);
                    if let Some(tree) = parsed_feature.tree.clone() {
                        ctx.local_features.push(LocalFeature {
                            key: key.clone(),
                            metadata: tree,
                        });
                    }
                    for d in parsed_feature.diagnostics() {
                        errors.push(ReportError {
                            message: format!(
                                "local feature {key}: {}:{}:{}: {}",
                                file.display(),
                                d.line,
                                d.column,
                                d.message
                            ),
                            pointer: feature.key.pointer.clone(),
                            line: parsed.locate(feature.key.span).line as usize,
                            column: parsed.locate(feature.key.span).column as usize,
                        });
                    }
                }
                // Not there: the feature-source finding says its metadata was not audited.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => errors.push(ReportError {
                    message: format!("local feature {key}: cannot read {}: {e}", file.display()),
                    pointer: feature.key.pointer.clone(),
                    line: parsed.locate(feature.key.span).line as usize,
                    column: parsed.locate(feature.key.span).column as usize,
                }),
            }
        }
    }
    if let Some(model) = parsed
        .model
        .as_ref()
        .filter(|m| !m.docker_compose_file.is_empty())
    {
        ctx.compose = Some(ComposeInput {
            config_dir: config_dir_in_workspace(path),
            files: model
                .docker_compose_file
                .iter()
                .map(|name| {
                    let file = dir.join(&name.value);
                    ComposeSource {
                        path: file.display().to_string(),
                        name: name.value.clone(),
                        text: std::fs::read(&file)
                            .map_err(|e| e.to_string())
                            .and_then(|bytes| {
                                String::from_utf8(bytes).map_err(|_| "not UTF-8 text".into())
                            }),
                    }
                })
                .collect(),
        });
    }
    let mut reports = vec![FileReport {
        path: shown,
        findings: audit::audit(&parsed, &ctx),
        errors,
    }];
    reports.extend(audit::audit_compose(&parsed, &ctx));
    reports
}

/// A file's text, or a message naming it.
fn read_text(path: &Path) -> Result<String, String> {
    match std::fs::read(path) {
        Ok(bytes) => {
            String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// The configuration's folder relative to its workspace folder (`.devcontainer`, or empty).
fn config_dir_in_workspace(config: &Path) -> String {
    let (Some(workspace), Ok(absolute)) = (workspace_folder(config), std::path::absolute(config))
    else {
        return ".devcontainer".into();
    };
    absolute
        .parent()
        .and_then(|d| d.strip_prefix(&workspace).ok())
        .map(|d| d.display().to_string())
        .unwrap_or_default()
}

/// The folder a configuration belongs to: the parent of `.devcontainer/`, or the folder holding
/// `.devcontainer.json`.
fn workspace_folder(config: &Path) -> Option<String> {
    let absolute = std::path::absolute(config).ok()?;
    let mut dir = absolute.parent()?;
    for ancestor in absolute.ancestors().skip(1).take(3) {
        if ancestor.file_name().is_some_and(|n| n == ".devcontainer") {
            dir = ancestor.parent()?;
            break;
        }
    }
    Some(dir.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_on_values() {
        assert_eq!(parse_fail_on("never"), Ok(FailOn::Never));
        assert_eq!(
            parse_fail_on("medium"),
            Ok(FailOn::AtLeast(Severity::Medium))
        );
        assert!(parse_fail_on("severe").is_err());
    }

    #[test]
    fn workspace_of_nested_config() {
        let ws = workspace_folder(Path::new("/r/.devcontainer/cuda/devcontainer.json"));
        assert_eq!(ws.as_deref(), Some("/r"));
        let ws = workspace_folder(Path::new("/r/.devcontainer.json"));
        assert_eq!(ws.as_deref(), Some("/r"));
    }
}
