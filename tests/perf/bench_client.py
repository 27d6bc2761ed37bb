#!/usr/bin/env python3
"""Benchmark client: codespace-agent vs qemu-ga on Unix sockets, in the same run.

Measures, for each agent:
  * ready: time from exec until its socket accepts a connection (polled every 0.1 ms);
  * ping: round-trip latency of sequential pings on one connection
    (our `{"id":N,"type":"ping"}` frame after the HMAC handshake; qemu-ga's
    `{"execute":"guest-ping"}` line);
  * idle RSS: VmRSS from /proc/PID/status after the pings and one idle second.

Only the Python standard library; the same client code path (one socket, blocking I/O) is used
for both agents so the client's own overhead is the same on both sides.
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HOST_LABEL = b"codespace-agent v1 host"
AGENT_LABEL = b"codespace-agent v1 agent"


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf.extend(chunk)
    return bytes(buf)


def send_frame(s, payload):
    s.sendall(struct.pack(">I", len(payload)) + payload)


def recv_frame(s):
    (n,) = struct.unpack(">I", recv_exact(s, 4))
    return recv_exact(s, n)


def transcript(label, parts):
    msg = label
    for p in parts:
        msg += struct.pack(">Q", len(p)) + p
    return msg


def agent_connect(path, key):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    hello = json.dumps({"type": "hello", "versions": [1], "role": "control",
                        "nonce": base64.b64encode(os.urandom(32)).decode()}).encode()
    send_frame(s, hello)
    welcome = recv_frame(s)
    w = json.loads(welcome)
    assert w["type"] == "welcome", w
    proof = hmac.new(key, transcript(HOST_LABEL, [hello, welcome]), hashlib.sha256).digest()
    auth = json.dumps({"type": "auth", "proof": base64.b64encode(proof).decode()}).encode()
    send_frame(s, auth)
    ok = json.loads(recv_frame(s))
    assert ok["type"] == "ok", ok
    expected = hmac.new(key, transcript(AGENT_LABEL, [hello, welcome, auth]), hashlib.sha256).digest()
    assert hmac.compare_digest(base64.b64decode(ok["proof"]), expected), "agent proof wrong"
    return s


def agent_request(s, request):
    """Sends one request (a dict with its `id`) and waits for the response with that id,
    skipping events. Returns (nanoseconds from send to response, response)."""
    req = json.dumps(request).encode()
    t0 = time.perf_counter_ns()
    send_frame(s, req)
    while True:
        r = json.loads(recv_frame(s))
        if r.get("id") == request["id"]:
            return time.perf_counter_ns() - t0, r


def agent_pings(s, n):
    out = []
    for i in range(1, n + 1):
        ns, r = agent_request(s, {"id": i, "type": "ping"})
        out.append(ns)
        assert r.get("ok", {}).get("pong") is True, r
    return out


def qga_pings(s, n):
    f = s.makefile("rb")
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        s.sendall(b'{"execute":"guest-ping"}\n')
        line = f.readline()
        out.append(time.perf_counter_ns() - t0)
        assert json.loads(line) == {"return": {}}, line
    return out


def wait_ready(path, proc, timeout=10.0):
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.close()
            return
        except OSError:
            time.sleep(0.0001)
    raise TimeoutError(f"{path} not listening after {timeout}s")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def rust_pings(client, kind, sock, key_file, n):
    """Runs the Rust client (agent/examples/ping_bench.rs); returns its summary."""
    args = [client, kind, sock] + ([key_file] if kind == "agent" else []) + [str(n)]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def run_one(kind, cmd, sock, pings, key, env, rust_client=None, key_file=None):
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    try:
        wait_ready(sock, proc)
        ready_ms = (time.perf_counter() - t0) * 1000
        if kind == "agent":
            s = agent_connect(sock, key)
            agent_pings(s, min(200, pings))  # warm-up
            lat = agent_pings(s, pings)
        else:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(sock)
            qga_pings(s, min(200, pings))
            lat = qga_pings(s, pings)
        # qemu-ga serves one client at a time: let go before the Rust client connects.
        s.close()
        rust = None
        if rust_client:
            rust_pings(rust_client, kind, sock, key_file, min(200, pings))  # warm-up
            rust = rust_pings(rust_client, kind, sock, key_file, pings)
        time.sleep(1.0)
        rss = rss_kib(proc.pid)
        return {"ready_ms": ready_ms, "lat_ns": lat, "rss_kib": rss, "rust": rust}
    finally:
        proc.terminate()  # by PID: only the process this script started
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def summary(lat):
    lat = sorted(lat)
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] / 1000.0
    return {"p50_us": statistics.median(lat) / 1000.0, "p90_us": q(0.90), "p99_us": q(0.99), "min_us": lat[0] / 1000.0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", required=True, help="codespace-agent binary")
    ap.add_argument("--qga", default="qemu-ga", help="qemu-ga binary")
    ap.add_argument("--pings", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", help="write raw results here")
    ap.add_argument("--rust-client", help="ping_bench binary (agent/examples/ping_bench.rs)")
    args = ap.parse_args()

    results = {"agent": [], "qga": []}
    # The agent's state directory is a tmpfs in production (/run); use one here too if there is.
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory() as d, tempfile.TemporaryDirectory(dir=shm) as state:
        key = os.urandom(32)
        key_file = os.path.join(d, "key")
        with open(key_file, "wb") as f:
            f.write(key)
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env["CODESPACE_AGENT_LOG"] = "warn"
        for run in range(args.runs):
            a_sock = os.path.join(d, f"agent{run}.sock")
            q_sock = os.path.join(d, f"qga{run}.sock")
            agent_cmd = [args.agent, "run", "--listen", f"unix:{a_sock}", "--key-file", key_file,
                         "--state-dir", os.path.join(state, f"state{run}")]
            qga_cmd = [args.qga, "--method", "unix-listen", "--path", q_sock,
                       "--pidfile", os.path.join(d, f"qga{run}.pid"),
                       "--statedir", d]
            # Alternate the order so neither always runs first.
            order = [("agent", agent_cmd, a_sock), ("qga", qga_cmd, q_sock)]
            if run % 2:
                order.reverse()
            for kind, cmd, sock in order:
                results[kind].append(run_one(kind, cmd, sock, args.pings, key, env, args.rust_client, key_file))

    def agg(kind):
        lat = [x for r in results[kind] for x in r["lat_ns"]]
        s = summary(lat)
        s["ready_ms_median"] = statistics.median(r["ready_ms"] for r in results[kind])
        s["ready_ms_max"] = max(r["ready_ms"] for r in results[kind])
        s["rss_kib_median"] = statistics.median(r["rss_kib"] for r in results[kind])
        if all(r["rust"] for r in results[kind]):
            # Median of the per-run medians (each run: PINGS sequential pings).
            for k in ("p50_us", "p90_us", "p99_us"):
                s["rust_" + k] = statistics.median(r["rust"][k] for r in results[kind])
        return s

    a, q = agg("agent"), agg("qga")
    ratio = q["p50_us"] / a["p50_us"]
    print(f"| measure | codespace-agent | qemu-ga | ratio (qemu-ga / agent) |")
    print(f"|---|---|---|---|")
    if "rust_p50_us" in a and "rust_p50_us" in q:
        ratio = q["rust_p50_us"] / a["rust_p50_us"]
        for p in ("p50", "p90", "p99"):
            k = f"rust_{p}_us"
            print(f"| ping {p} (us), Rust client | {a[k]:.1f} | {q[k]:.1f} | {q[k] / a[k]:.2f}x |")
    print(f"| ping p50 (us), Python client | {a['p50_us']:.1f} | {q['p50_us']:.1f} | {q['p50_us'] / a['p50_us']:.2f}x |")
    print(f"| ping p99 (us), Python client | {a['p99_us']:.1f} | {q['p99_us']:.1f} | {q['p99_us'] / a['p99_us']:.2f}x |")
    print(f"| idle RSS (KiB, median) | {a['rss_kib_median']:.0f} | {q['rss_kib_median']:.0f} | {q['rss_kib_median'] / a['rss_kib_median']:.2f}x |")
    print(f"| ready after exec (ms, median / max) | {a['ready_ms_median']:.1f} / {a['ready_ms_max']:.1f} | {q['ready_ms_median']:.1f} / {q['ready_ms_max']:.1f} | |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"agent": a, "qga": q, "ping_ratio": ratio, "runs": args.runs, "pings": args.pings}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
