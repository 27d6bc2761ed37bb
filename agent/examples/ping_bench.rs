//! Ping round-trip benchmark client for `tests/perf/agent_vs_qemu_ga.sh`: blocking std sockets,
//! no async runtime, so the client adds as little as possible to what it measures.
//!
//! ```text
//! ping_bench agent SOCKET KEY_FILE PINGS   # codespace-agent: HMAC handshake, then `ping` frames
//! ping_bench qga SOCKET PINGS              # qemu-ga: `{"execute":"guest-ping"}` lines
//! ```
//!
//! Prints one line of JSON: `{"p50_us":..,"p90_us":..,"p99_us":..,"min_us":..,"n":..}`.

// A benchmark tool reports on stdout.
#![allow(clippy::print_stdout)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use codespace_agent::wire::frame::HEADER_LEN;
use codespace_agent::wire::handshake::host_start;
use codespace_agent::wire::{FrameCodec, Role, SharedKey};

fn read_payload(s: &mut impl Read, codec: &FrameCodec) -> anyhow::Result<Vec<u8>> {
    let mut h = [0u8; HEADER_LEN];
    s.read_exact(&mut h)?;
    let len = codec.check_header(h)?;
    let mut p = vec![0u8; len];
    s.read_exact(&mut p)?;
    Ok(p)
}

fn agent(sock: &str, key_file: &str, n: usize) -> anyhow::Result<Vec<u128>> {
    let codec = FrameCodec::default();
    let key = SharedKey::new(&std::fs::read(key_file).context("key file")?)?;
    let mut s = UnixStream::connect(sock).context("connect")?;
    let mut nonce = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| anyhow!("rng"))?;
    let (state, hello) = host_start(Role::Control, Some(key), nonce);
    s.write_all(&codec.encode_payload(&hello)?)?;
    let (state, auth) = state.handle(&read_payload(&mut s, &codec)?)?;
    let auth = auth.ok_or_else(|| anyhow!("agent did not ask for authentication"))?;
    s.write_all(&codec.encode_payload(&auth)?)?;
    state.handle(&read_payload(&mut s, &codec)?)?;
    let mut reader = BufReader::new(s.try_clone()?);
    let mut out = Vec::with_capacity(n);
    for id in 1..=n {
        let req = format!(r#"{{"id":{id},"type":"ping"}}"#);
        let frame = codec.encode_payload(req.as_bytes())?;
        let t0 = Instant::now();
        s.write_all(&frame)?;
        loop {
            let p = read_payload(&mut reader, &codec)?;
            // Events (heartbeats) may interleave; only our response ends the round trip.
            let v: serde_json::Value = serde_json::from_slice(&p)?;
            if v.get("id").and_then(|i| i.as_u64()) == Some(id as u64) {
                if v["ok"]["pong"] != true {
                    bail!("unexpected answer {v}");
                }
                break;
            }
        }
        out.push(t0.elapsed().as_nanos());
    }
    Ok(out)
}

fn qga(sock: &str, n: usize) -> anyhow::Result<Vec<u128>> {
    let mut s = UnixStream::connect(sock).context("connect")?;
    let mut reader = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        line.clear();
        let t0 = Instant::now();
        s.write_all(b"{\"execute\":\"guest-ping\"}\n")?;
        reader.read_line(&mut line)?;
        out.push(t0.elapsed().as_nanos());
        if line.trim() != r#"{"return": {}}"# {
            bail!("unexpected answer {line:?}");
        }
    }
    Ok(out)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mut lat = match args.get(1).map(String::as_str) {
        Some("agent") if args.len() == 5 => agent(&args[2], &args[3], args[4].parse()?)?,
        Some("qga") if args.len() == 4 => qga(&args[2], args[3].parse()?)?,
        _ => bail!("usage: ping_bench agent SOCKET KEY_FILE PINGS | ping_bench qga SOCKET PINGS"),
    };
    lat.sort_unstable();
    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1000.0;
    println!(
        r#"{{"p50_us":{:.2},"p90_us":{:.2},"p99_us":{:.2},"min_us":{:.2},"n":{}}}"#,
        q(0.5),
        q(0.9),
        q(0.99),
        lat[0] as f64 / 1000.0,
        lat.len()
    );
    Ok(())
}
