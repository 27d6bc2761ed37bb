//! `codespace-agentctl ports`: list ports, set visibilities, forward a port.
//!
//! `ports forward` plays the part of the host's port-forwarding service: it holds the grant key
//! (from `--grant-key-file`, or a fresh random one), delivers it to the agent over the control
//! connection, and for every local TCP connection opens a `forward` connection with a grant it
//! mints for the principal given by `--as`/`--orgs` (authenticated when the command started;
//! without `--as` the grants are anonymous, which only public ports accept). A grant refused as
//! `stale-epoch` (the port's visibility changed) is minted again once with the new epoch.
//! Forward connections use single-use tickets fetched over the control connection (one round
//! trip instead of two; `codespace_agent::host::tickets`) and fall back to the full handshake
//! when the agent does not issue them or no longer knows one. No early data is sent: the local
//! client's bytes go out only after the agent has proved the shared key.
//!
//! Exit codes as for the other agent commands: 0 success, 1 the agent answered with an error,
//! 2 invalid arguments, 3 the agent could not be reached, 4 the agent violated the protocol.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use codespace_agent::host::forward::{
    mint, port_epoch, put_grant_key, ForwardStream, MAX_GRANT_TTL,
};
use codespace_agent::host::ports::{list_all, list_page};
use codespace_agent::host::tickets::{open_ticketed, TicketPool};
use codespace_agent::host::{Client, ConnectOptions};
use codespace_agent::relay::{relay, reregister, RelayEnd};
use codespace_agent::wire::grant::{GrantKey, GrantPrincipal, MIN_GRANT_KEY_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Map};

use crate::connect::{options, print_json, ConnectArgs, Failure};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `ports` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum PortsCommand {
    /// Print the detected ports with their visibility, epoch and listeners (JSON).
    ///
    /// Prints every port: the agent answers in pages (in port order) and all are fetched. With
    /// --limit or --after, prints one page as the agent sent it: when its `more` is true, the
    /// rest starts with `--after` set to its `next_after`.
    List(ListArgs),
    /// Set a port's visibility (checked against the organization policy).
    Visibility {
        /// The port.
        port: u16,
        /// The new visibility.
        #[arg(value_enum)]
        visibility: VisibilityArg,
    },
    /// Forward a local TCP listener to a port in the codespace, through the agent.
    Forward(ForwardArgs),
}

/// `ports list` arguments.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print one page of at most N ports (a larger N is served as the agent's largest page).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
    /// Print one page of the ports above PORT (the previous page's `next_after`).
    #[arg(long, value_name = "PORT")]
    pub after: Option<u16>,
}

/// Visibilities.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum VisibilityArg {
    /// The creator only.
    Private,
    /// Members of the codespace's organization.
    Org,
    /// Anyone, without authentication.
    Public,
}

/// `ports forward` arguments.
#[derive(Debug, clap::Args)]
pub struct ForwardArgs {
    /// The port in the codespace.
    pub port: u16,
    /// Local address to listen on (port 0 picks a free one; the bound address is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// The principal's login (omit for anonymous grants: public ports only).
    #[arg(long = "as", value_name = "LOGIN")]
    pub login: Option<String>,
    /// The principal's organizations, comma-separated.
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    pub orgs: Vec<String>,
    /// Grant key file (its bytes are the key, at least 32); default: a fresh random key.
    #[arg(long, value_name = "F")]
    pub grant_key_file: Option<PathBuf>,
    /// Grant lifetime in minutes (at most 180).
    #[arg(long, value_name = "MIN", default_value_t = 180)]
    pub ttl_minutes: u64,
}

/// Runs one `ports` command.
pub fn run(args: &ConnectArgs, command: PortsCommand) -> ExitCode {
    // Forwarding relays many connections at once; the other commands need one thread only.
    let runtime = match crate::connect::runtime(matches!(command, PortsCommand::Forward(_))) {
        Ok(r) => r,
        Err(code) => return code,
    };
    crate::connect::finish(runtime.block_on(execute(args, command)))
}

async fn execute(args: &ConnectArgs, command: PortsCommand) -> Result<(), Failure> {
    let opts = options(args).map_err(Failure::Usage)?;
    match command {
        PortsCommand::List(ListArgs { limit, after }) => {
            let client = Client::connect(&opts).await.map_err(Failure::Agent)?;
            let v = if limit.is_none() && after.is_none() {
                list_all(&client, REQUEST_TIMEOUT).await
            } else {
                list_page(&client, after, limit, REQUEST_TIMEOUT).await
            }
            .map_err(Failure::Agent)?;
            print_json(&v);
            Ok(())
        }
        PortsCommand::Visibility { port, visibility } => {
            let client = Client::connect(&opts).await.map_err(Failure::Agent)?;
            let visibility = match visibility {
                VisibilityArg::Private => "private",
                VisibilityArg::Org => "org",
                VisibilityArg::Public => "public",
            };
            let mut f = Map::new();
            f.insert("port".into(), port.into());
            f.insert("visibility".into(), visibility.into());
            let v = client
                .request("ports_visibility", f, REQUEST_TIMEOUT)
                .await
                .map_err(Failure::Agent)?;
            print_json(&v);
            Ok(())
        }
        PortsCommand::Forward(f) => forward(opts, f).await,
    }
}

fn grant_key_bytes(file: Option<&PathBuf>) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
    match file {
        Some(p) => {
            let bytes = zeroize::Zeroizing::new(
                std::fs::read(p)
                    .with_context(|| format!("cannot read grant key file {}", p.display()))?,
            );
            if bytes.len() < MIN_GRANT_KEY_LEN {
                bail!(
                    "grant key file {}: {} bytes; at least {MIN_GRANT_KEY_LEN} are required",
                    p.display(),
                    bytes.len()
                );
            }
            Ok(bytes)
        }
        None => {
            let mut bytes = zeroize::Zeroizing::new(vec![0u8; 32]);
            SystemRandom::new()
                .fill(&mut bytes)
                .map_err(|_| anyhow!("random number generator failed"))?;
            Ok(bytes)
        }
    }
}

/// The port's current epoch from `ports_list`.
async fn epoch_of(client: &Client, port: u16) -> Result<u64, Failure> {
    port_epoch(client, port, REQUEST_TIMEOUT)
        .await
        .map_err(Failure::Agent)?
        .ok_or_else(|| Failure::Local(anyhow!("no listener on port {port} in the codespace")))
}

struct Forwarding {
    opts: ConnectOptions,
    client: Client,
    key: GrantKey,
    port: u16,
    principal: Option<GrantPrincipal>,
    ttl: Duration,
    epoch: AtomicU64,
    tickets: TicketPool,
}

async fn forward(opts: ConnectOptions, args: ForwardArgs) -> Result<(), Failure> {
    if args.ttl_minutes == 0 || Duration::from_secs(args.ttl_minutes * 60) > MAX_GRANT_TTL {
        return Err(Failure::Usage(anyhow!(
            "--ttl-minutes must be between 1 and 180"
        )));
    }
    if args.login.is_none() && !args.orgs.is_empty() {
        return Err(Failure::Usage(anyhow!("--orgs needs --as LOGIN")));
    }
    let bytes = grant_key_bytes(args.grant_key_file.as_ref()).map_err(Failure::Usage)?;
    let key = GrantKey::new(&bytes).map_err(|e| Failure::Usage(e.into()))?;
    let client = Client::connect(&opts).await.map_err(Failure::Agent)?;
    put_grant_key(&client, &bytes, REQUEST_TIMEOUT)
        .await
        .map_err(Failure::Agent)?;
    let epoch = epoch_of(&client, args.port).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))
        .map_err(Failure::Local)?;
    let local = listener
        .local_addr()
        .map_err(|e| Failure::Local(e.into()))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let state = Arc::new(Forwarding {
        opts,
        client,
        key,
        port: args.port,
        principal: args.login.map(|login| GrantPrincipal {
            login,
            organizations: args.orgs,
            authenticated_at: now,
        }),
        ttl: Duration::from_secs(args.ttl_minutes * 60),
        epoch: AtomicU64::new(epoch),
        tickets: TicketPool::default(),
    });
    // A first batch now, so the first local connection does not wait for it; an agent that
    // does not issue tickets is served with the full handshake.
    if state.client.info().authenticated {
        let _ = state.tickets.refill(&state.client).await;
    }
    println!(
        "{}",
        json!({"listening": local.to_string(), "port": args.port, "epoch": epoch})
    );
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    tokio::spawn(serve_local(state.clone(), tcp));
                }
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    eprintln!("codespace-agentctl: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

async fn serve_local(state: Arc<Forwarding>, tcp: tokio::net::TcpStream) {
    let _ = tcp.set_nodelay(true);
    for attempt in 0..2 {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let grant = mint(
            &state.key,
            state.port,
            state.epoch.load(Ordering::Relaxed),
            state.principal.clone(),
            now,
            state.ttl,
        );
        let opened = open_ticketed(
            &state.opts,
            &state.client,
            &state.tickets,
            state.port,
            &grant,
            &[],
        )
        .await;
        match opened {
            Ok((stream, _)) => {
                let end = match stream {
                    ForwardStream::Unix(s) => relay(tcp, s, std::future::pending()).await,
                    ForwardStream::Vsock(s) => match reregister(s) {
                        Ok(s) => relay(tcp, s, std::future::pending()).await,
                        Err(e) => RelayEnd::Failed(e),
                    },
                    _ => RelayEnd::Failed(std::io::Error::other("unknown stream kind")),
                };
                if let RelayEnd::Failed(e) = end {
                    eprintln!("codespace-agentctl: forwarded connection failed: {e}");
                }
                return;
            }
            Err(e) if attempt == 0 && e.reason() == Some("stale-epoch") => {
                match epoch_of(&state.client, state.port).await {
                    Ok(epoch) => state.epoch.store(epoch, Ordering::Relaxed),
                    Err(_) => {
                        eprintln!("codespace-agentctl: port {} is gone", state.port);
                        return;
                    }
                }
            }
            Err(e) => {
                eprintln!("codespace-agentctl: {e}");
                return;
            }
        }
    }
}
