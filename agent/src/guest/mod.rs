//! The guest daemon: everything that runs inside the codespace VM.
//!
//! ```text
//!  config ─▶ Agent::run ─▶ Listener (vsock:any:1023 | unix:PATH) ─▶ Server
//!                             │                                     │ per connection:
//!                             └ sd_notify READY=1                   │ handshake → Dispatcher
//!  heartbeat task ── EventSink (broadcast) ─────────────────────────┘   └─ SecretsService (vault)
//!  PortWatcher (detect) ──┘ port_opened/closed; PortChange mpsc ─▶ port registry
//!  SigningService ─┘ signing_request, audit (signing); signature_put/refuse ─▶ it
//!  Firewall: nft table applied before listening, removed after the server drained
//! ```
//!
//! [`Agent`] wires the parts together; each part lives in its own module and is tested on its own.

pub(crate) mod activity;
pub mod broker;
pub mod config;
pub mod detect;
pub mod dispatch;
pub mod firewall;
pub mod health;
pub(crate) mod job;
pub mod lifecycle;
pub mod ports;
pub mod privsep;
pub mod registry;
pub mod request;
pub mod sandbox;
pub mod server;
pub mod service;
pub mod signing;
pub mod system;
pub(crate) mod trail;
pub mod transport;
pub mod user;
pub mod vault;
pub mod vault_service;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use tracing::{info, warn};

use self::config::AgentConfig;
use self::dispatch::{AgentFacts, Dispatcher};
use self::health::HealthSampler;
use self::server::{Server, ServerSettings};
use self::service::{EventSink, SecretsService};
use self::transport::Listener;
use crate::wire::handshake::AgentIdentity;
use crate::wire::{Event, KeyError, SharedKey};

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The key file could not be read.
    #[error("cannot read key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key is too short.
    #[error("key file {path}: {source}")]
    Key {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: KeyError,
    },
    /// The state directory could not be created.
    #[error("cannot create state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The lifecycle runner could not be set up (organization policy file, launcher).
    #[error("lifecycle: {0}")]
    Lifecycle(String),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Reads a shared key file (its bytes are the key).
pub(crate) fn read_key_file(path: &std::path::Path) -> Result<SharedKey, StartError> {
    let bytes = std::fs::read(path).map_err(|source| StartError::KeyFile {
        path: path.to_owned(),
        source,
    })?;
    SharedKey::new(&bytes).map_err(|source| StartError::Key {
        path: path.to_owned(),
        source,
    })
}

/// Creates the state directory (mode 0700; the vault then opens it to 0711 so the remote user
/// can reach its own files).
pub(crate) fn prepare_state_dir(dir: &std::path::Path) -> Result<(), StartError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|source| StartError::StateDir {
            path: dir.to_owned(),
            source,
        })
}

/// The assembled daemon.
pub struct Agent {
    config: AgentConfig,
    events: EventSink,
    started: Instant,
    secrets: Option<Arc<dyn lifecycle::SecretSource>>,
    signing: Option<Arc<signing::SigningService>>,
}

impl Agent {
    /// Prepares the agent: creates the state directory (mode 0700; the vault then opens it to
    /// 0711 so the remote user can reach its own files) and the event stream.
    pub fn new(config: AgentConfig) -> Result<Self, StartError> {
        // Separated, the privileged side made the state directory.
        if privsep::client().is_none() {
            prepare_state_dir(&config.state_dir)?;
        }
        let events = EventSink::new(256, config.audit_records);
        Ok(Self {
            config,
            events,
            started: Instant::now(),
            secrets: None,
            signing: None,
        })
    }

    /// Where lifecycle commands get secret values from (for their environment, when the
    /// profile allows, and for redacting every command's output).
    pub fn set_secret_source(&mut self, source: Arc<dyn lifecycle::SecretSource>) {
        self.secrets = Some(source);
    }

    /// The commit signing broker's service: its requests, its `status` section and the
    /// session's signing settings go to it.
    pub fn set_signing(&mut self, service: Arc<signing::SigningService>) {
        self.signing = Some(service);
    }

    /// The event stream, for services that push events (token expiry).
    pub fn events(&self) -> EventSink {
        self.events.clone()
    }

    /// The configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// Binds, signals readiness, serves until `shutdown` resolves, then drains.
    pub async fn run(
        self,
        service: Option<Arc<dyn SecretsService>>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), StartError> {
        let c = &self.config;
        let key = c.key_file.as_deref().map(read_key_file).transpose()?;
        let monitor = privsep::client().cloned();
        let listen_error = |source| StartError::Listen {
            addr: c.listen.to_string(),
            source,
        };
        // The firewall goes on before anything listens; separated, the privileged side applies
        // it and binds the listener (and sends READY=1: it is the unit's main process).
        // Single, the table is dropped (deleted) on every return path below.
        let (listener, mut firewall, firewall_status) = match &monitor {
            Some(m) => {
                let (fd, status) = m
                    .listen()
                    .map_err(|e| listen_error(std::io::Error::other(e)))?;
                (
                    Listener::from_fd(&c.listen, fd).map_err(listen_error)?,
                    None,
                    status,
                )
            }
            None => {
                let firewall = firewall::Firewall::apply(&c.firewall);
                let status = firewall.status();
                (
                    Listener::bind(&c.listen).map_err(listen_error)?,
                    Some(firewall),
                    status,
                )
            }
        };
        // Commands start through the privileged side when separated, else through the
        // launcher the configuration asks for; the launcher's sandbox also owns the restricted
        // network namespace, whose listeners detection and forwarding reach through it.
        let launcher: Arc<dyn lifecycle::Launcher> = match &monitor {
            Some(m) => Arc::new(privsep::MonitorLauncher::new(
                m.clone(),
                c.lifecycle.launcher.name(),
            )),
            None => lifecycle::launcher(c),
        };
        let restricted = launcher.clone().restricted_sockets();
        let (watcher, port_changes) =
            detect::PortWatcher::spawn(&c.detect, self.events.clone(), restricted.clone());
        let watcher = Arc::new(watcher);
        let health = Arc::new(HealthSampler::new(&c.workspace_dir));
        let facts = AgentFacts {
            agent_id: system::agent_id(c.agent_id.as_deref()),
            boot_id: system::boot_id(),
            started: self.started,
        };
        // Without a secrets service there is no key to seal to; the capability list says so.
        let public_key = service.as_ref().map_or([0; 32], |s| s.public_key());
        let ports = ports::PortsService::with_restricted_network(
            c.ports.clone(),
            Some(self.events.clone()),
            restricted,
        );
        ports::forward::raise_fd_limit();
        let follow = tokio::spawn(ports::service::follow(ports.clone(), port_changes));
        let org_policy = lifecycle::read_org_policy(c).map_err(StartError::Lifecycle)?;
        // The organization's idle_timeout_minutes can only shorten the configured timeout.
        let org_idle = org_policy.as_ref().and_then(|p| p.idle_timeout_minutes);
        let lifecycle = lifecycle::build(
            c,
            self.events.clone(),
            self.secrets.clone(),
            Some(launcher),
            org_policy,
        );
        let activity = activity::Activity::new(
            activity::IdleSettings::effective(c.idle.timeout, c.idle.warn, org_idle),
            &c.idle.terminals,
        );
        ports.count_activity_on(activity.clone());
        let mut dispatcher =
            Dispatcher::new(facts.clone(), service, c.codespace.clone(), health.clone())
                .with_ports(ports.clone())
                .with_lifecycle(lifecycle)
                .with_activity(activity.clone())
                .with_events(self.events.clone());
        if let Some(signing) = &self.signing {
            signing.update(None, &c.codespace);
            dispatcher = dispatcher.with_signing(signing.clone());
        }
        let dispatcher = Arc::new(dispatcher);
        let w = watcher.clone();
        dispatcher.add_status_section("detection", Arc::new(move || json!(w.status())));
        dispatcher.add_status_section("firewall", Arc::new(move || json!(firewall_status)));
        dispatcher.add_status_section("privsep", Arc::new(privsep::status));
        let a = activity.clone();
        dispatcher.add_status_section("activity", Arc::new(move || a.status()));
        dispatcher.add_status_section("ports", Arc::new(move || ports.status()));
        let events = self.events.clone();
        dispatcher.add_status_section("audit", Arc::new(move || events.trail().summary()));
        let identity = AgentIdentity {
            agent_id: facts.agent_id.clone(),
            boot_id: facts.boot_id.clone(),
            capabilities: dispatcher.capabilities(),
            public_key,
        };
        let settings = ServerSettings {
            max_frame_bytes: c.max_frame_bytes,
            max_connections: c.max_connections,
            max_handshakes: c.max_handshakes,
            max_requests_per_connection: c.max_requests_per_connection,
            handshake_timeout: c.handshake_timeout,
            request_timeout: c.request_timeout,
            shutdown_grace: c.shutdown_grace,
            allowed_cids: c.allowed_cids.clone(),
        };
        let server = Server::new(settings, identity, key, dispatcher, self.events.clone());
        info!(listen = %c.listen, agent_id = %facts.agent_id, "listening");
        if privsep::notifies_itself() {
            if let Err(e) = system::sd_notify("READY=1\nSTATUS=listening") {
                warn!(error = %e, "sd_notify failed");
            }
        }
        let heartbeat = tokio::spawn(heartbeat(self.events.clone(), health, c.heartbeat_interval));
        let idle = tokio::spawn(activity::watch(activity, self.events.clone()));
        server.run(listener, shutdown).await;
        heartbeat.abort();
        idle.abort();
        watcher.stop();
        follow.abort();
        if let Some(mut firewall) = firewall.take() {
            firewall.remove();
            let _ = system::sd_notify("STOPPING=1");
        }
        info!("stopped");
        Ok(())
    }
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("config", &self.config)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

/// Pushes a `heartbeat` event with fresh metrics every `interval`.
async fn heartbeat(events: EventSink, health: Arc<HealthSampler>, interval: std::time::Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; the first heartbeat comes one interval in
    loop {
        tick.tick().await;
        // Memory freed since the last tick (after a flood of requests, say) goes back to the
        // kernel even while nobody is connected.
        let _ = tokio::task::spawn_blocking(system::release_free_memory).await;
        if events.receiver_count() == 0 {
            continue;
        }
        let h = health.clone();
        let Ok(metrics) = tokio::task::spawn_blocking(move || h.sample()).await else {
            continue;
        };
        let _ = events.send(Event::new("heartbeat", json!(metrics)));
    }
}
