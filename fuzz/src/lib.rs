//! What the fuzz targets share: an agent whose effects stay in memory (its state directory is
//! on tmpfs, its lifecycle commands are never run), the proofs a host computes with the fixed
//! shared key, and the placeholders that let a hand-written or mutated input say "a valid
//! ticket / grant / sealed secret here" (libFuzzer cannot find an HMAC or an AEAD tag).
//!
//! Input format of the line-based targets (`handshake`, `request`): frames are lines, each
//! one JSON payload the target frames with the real codec. Placeholders in a line:
//!
//! | placeholder | becomes |
//! |---|---|
//! | `"@ticket"` | a ticket the agent issued (base64), so a ticket hello can be redeemed |
//! | `"@grant"` | a grant for port 3000, epoch 0, signed with the agent's grant key |
//! | `@ws` | the workspace folder (it holds `.devcontainer/devcontainer.json`) |
//! | `{"name", "generation", "plaintext"}` in `secrets_put` | that secret sealed to the agent's key |
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use codespace_agent::guest::config::CodespaceIdentity;
use codespace_agent::guest::dispatch::{AgentFacts, Dispatcher};
use codespace_agent::guest::health::HealthSampler;
use codespace_agent::guest::lifecycle::launcher::{
    ExitReport, LaunchError, LaunchSpec, Launched, Launcher, Program,
};
use codespace_agent::guest::lifecycle::runner::Runner;
use codespace_agent::guest::lifecycle::service::Principals;
use codespace_agent::guest::lifecycle::settings::LifecycleConfig;
use codespace_agent::guest::lifecycle::{LifecycleService, SecretSource};
use codespace_agent::guest::ports::{PortsConfig, PortsService};
use codespace_agent::guest::service::{EventSink, SecretsService};
use codespace_agent::guest::vault::{Owner, Vault, VaultConfig};
use codespace_agent::guest::vault_service::VaultService;
use codespace_agent::seal::AgentKeyPair;
use codespace_agent::wire::grant::{GrantClaims, GrantKey};
use serde_json::{json, Value};

/// The shared key of every fuzzed handshake (a compromised guest has it too).
pub const KEY: [u8; 32] = [0x4b; 32];
/// The grant key installed in the fuzzed agent.
pub const GRANT_KEY: [u8; 32] = [0x47; 32];
/// The label of the host's proof in the full handshake (`wire::handshake`).
pub const HOST_LABEL: &[u8] = b"codespace-agent v1 host";
/// The label of the agent's proof (`wire::handshake`).
pub const AGENT_LABEL: &[u8] = b"codespace-agent v1 agent";
/// The label of a forward ticket's proof (`wire::ticket`).
pub const TICKET_LABEL: &[u8] = b"codespace-agent v1 forward-ticket";

/// HMAC-SHA256 under [`KEY`] over `label ‖ (len u64 BE ‖ part)*`, as the module docs of
/// `wire::handshake` and `wire::ticket` define it, computed here independently.
pub fn proof(label: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &KEY);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(label);
    for p in parts {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    ctx.sign().as_ref().to_vec()
}

/// The host's `auth` payload for `proof(label, parts)`.
pub fn auth_payload(label: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    serde_json::to_vec(&json!({"type": "auth", "proof": B64.encode(proof(label, parts))})).unwrap()
}

/// The input's lines (a trailing `\r` is kept: it is part of the payload).
pub fn lines(data: &[u8]) -> Vec<&[u8]> {
    data.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect()
}

/// A directory on tmpfs (else the temporary directory) for this process: the agent's state
/// directory and the workspace live there, so no effect reaches a disk.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("codespace-fuzz-{}", std::process::id()));
        let ws = dir.join("ws").join(".devcontainer");
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::write(ws.join("devcontainer.json"), DEVCONTAINER).unwrap();
        dir
    })
}

/// The workspace folder (`@ws`).
pub fn workspace() -> PathBuf {
    scratch().join("ws")
}

/// The devcontainer.json the lifecycle requests find in the workspace: every phase, every
/// command form, a remote user, remote env, extensions.
const DEVCONTAINER: &str = r#"{
  "name": "fuzz",
  "remoteUser": "root",
  "remoteEnv": {"A": "1", "PATH": "${containerEnv:PATH}:/x", "LD_PRELOAD": "/evil.so"},
  "onCreateCommand": "echo create",
  "updateContentCommand": ["echo", "update"],
  "postCreateCommand": {"a": "echo a", "b": ["echo", "b"], "fail": "fail"},
  "postStartCommand": "echo start $A",
  "postAttachCommand": "echo attach",
  "customizations": {"vscode": {"extensions": ["ms-python.python", "evil.ext", "x.vsix"]}}
}"#;

/// Starts nothing: prints its argv and environment (secret values included, so redaction has
/// work to do) and exits 1 for a command that mentions `fail`, else 0.
#[derive(Debug)]
struct InMemoryLauncher;

impl Launcher for InMemoryLauncher {
    fn launch(&self, spec: &LaunchSpec, program: &Program) -> Result<Launched, LaunchError> {
        let argv = program.argv();
        if argv.is_empty() {
            return Err(LaunchError::Empty);
        }
        let mut out = argv.join(" ");
        for (k, v) in &spec.env {
            out.push_str(&format!("\n{k}={v}"));
        }
        let code = if out.contains("fail") { 1 } else { 0 };
        Ok(Launched {
            stdout: Some(Box::pin(std::io::Cursor::new(out.into_bytes()))),
            stderr: Some(Box::pin(std::io::Cursor::new(b"err\n".to_vec()))),
            exit: Box::pin(async move {
                ExitReport {
                    code: Some(code),
                    signal: None,
                    timed_out: false,
                    duration: Duration::ZERO,
                }
            }),
            applied: None,
            degraded: Vec::new(),
        })
    }

    fn name(&self) -> &'static str {
        "in-memory"
    }
}

/// An agent whose effects stay in memory: the vault (its environment file on tmpfs), the port
/// registry with a grant key installed and port 3000 known, tickets, and lifecycle runs that
/// start nothing.
pub struct Agent {
    /// Serves everything but the lifecycle requests (`session` may change the trust facts,
    /// which would kill the restricted runs of this machine if the lifecycle were wired here).
    pub dispatcher: Arc<Dispatcher>,
    /// Serves `lifecycle_run` and `extensions_install`.
    pub lifecycle: Arc<Dispatcher>,
    /// The vault behind `token_put`, `secrets_put`, `session`.
    pub vault: Vault,
    /// The port service.
    pub ports: Arc<PortsService>,
    /// The event stream.
    pub events: EventSink,
}

fn facts() -> AgentFacts {
    AgentFacts {
        agent_id: "fuzz".into(),
        boot_id: "boot".into(),
        started: Instant::now(),
    }
}

impl Agent {
    /// A fresh agent; `with_port` makes port 3000 known to the registry (a listener of unknown
    /// owner). Without it no forward connection can reach the stage where it connects.
    pub fn new(with_port: bool) -> Self {
        let (events, _) = codespace_agent::guest::service::EventSink::channel(64);
        let state = scratch().join("state");
        let vault = Vault::new(
            VaultConfig::new(&state, Owner::current()),
            AgentKeyPair::generate().unwrap(),
        )
        .unwrap();
        let service: Arc<dyn SecretsService> = Arc::new(VaultService::new(vault.clone()));
        let ports = PortsService::new(PortsConfig::default(), Some(events.clone()));
        let mut fields = serde_json::Map::new();
        fields.insert("key".into(), B64.encode(GRANT_KEY).into());
        ports.put_grant_key(fields).unwrap();
        if with_port {
            ports.listener_opened(3000, 1, json!({"address": "127.0.0.1"}));
        }
        let health = Arc::new(HealthSampler::new(&workspace()));
        let codespace = CodespaceIdentity {
            owner: Some("mona".into()),
            organization: Some("octo".into()),
            ..CodespaceIdentity::default()
        };
        let dispatcher = Arc::new(
            Dispatcher::new(facts(), Some(service), codespace.clone(), health.clone())
                .with_ports(ports.clone()),
        );
        let secrets: Arc<dyn SecretSource> = Arc::new(vault.clone());
        let lifecycle = LifecycleService::new(
            LifecycleConfig::default(),
            Runner::new(Arc::new(InMemoryLauncher), events.clone()),
            events.clone(),
            state,
            Principals {
                configured: None,
                trusted: vec!["root".into()],
                restricted: "nobody".into(),
            },
            Some(secrets),
            None,
        );
        let lifecycle = Arc::new(
            Dispatcher::new(facts(), None, codespace, health).with_lifecycle(Arc::new(lifecycle)),
        );
        Self {
            dispatcher,
            lifecycle,
            vault,
            ports,
            events,
        }
    }

    /// The agent's sealing key (what `welcome` announces).
    pub fn public_key(&self) -> [u8; 32] {
        self.vault.public_key()
    }

    /// Replaces the placeholders of one line (see the crate docs).
    pub fn substitute(&self, line: &[u8]) -> Vec<u8> {
        let Ok(text) = std::str::from_utf8(line) else {
            return line.to_vec();
        };
        let mut text = text.replace("@ws", &workspace().display().to_string());
        if text.contains("\"@ticket\"") {
            let ticket = self.ports.tickets().issue(1).unwrap().remove(0);
            text = text.replace("\"@ticket\"", &format!("\"{}\"", ticket.to_base64()));
        }
        if text.contains("\"@grant\"") {
            let grant = GrantKey::new(&GRANT_KEY).unwrap().sign(GrantClaims {
                principal: None,
                port: 3000,
                epoch: 0,
                expires_at: time::OffsetDateTime::now_utc().unix_timestamp() + 600,
            });
            text = text.replace("\"@grant\"", &serde_json::to_string(&grant).unwrap());
        }
        let Ok(mut value) = serde_json::from_str::<Value>(&text) else {
            return text.into_bytes();
        };
        if value["type"] == "secrets_put" {
            if let Some(list) = value["secrets"].as_array_mut() {
                for entry in list {
                    seal_in_place(entry, &self.public_key());
                }
            }
            return serde_json::to_vec(&value).unwrap();
        }
        text.into_bytes()
    }
}

/// `{"name", "generation", "plaintext"}` → the same secret sealed to `public`.
fn seal_in_place(entry: &mut Value, public: &[u8; 32]) {
    let (Some(name), Some(generation), Some(plain)) = (
        entry["name"].as_str(),
        entry["generation"].as_u64(),
        entry["plaintext"].as_str(),
    ) else {
        return;
    };
    if let Ok(sealed) = codespace_agent::seal::seal(public, name, generation, plain.as_bytes()) {
        *entry = serde_json::to_value(sealed).unwrap();
    }
}

/// One current-thread runtime per fuzzing process (built once: a runtime per input would be
/// most of the cost).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}
