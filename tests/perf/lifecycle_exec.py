#!/usr/bin/env python3
"""Benchmark: time from request to exit of `/bin/true`, through the agent's `lifecycle_run`
(unsandboxed = plain launcher, trusted and restricted sandbox) and through qemu-ga's
`guest-exec` + polling `guest-exec-status` (no sleep between polls), in the same run.

The agent's time covers: frame in, reading and parsing the devcontainer.json, the policy
decision, user/env resolution, the run log, spawn (sandbox setup: Landlock, seccomp, cgroup),
exit, and the response. qemu-ga's covers the exec and status round trips only.
All three servers run at once and the four paths are interleaved in blocks of --block runs
(each block in a rotated order), so a busy moment of the shared machine hits every path alike.
Only the Python standard library; helpers are shared with bench_client.py.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_client import agent_connect, agent_request, summary, wait_ready  # noqa: E402


# Seconds of pause before each request (--gap): commands that come one at a time after a pause,
# as lifecycle commands do, meet cold caches and idle kernel state (see the README).
GAP = 0.0


def agent_runs(s, workspace, access, n, first_id):
    out = []
    for i in range(first_id, first_id + n):
        if GAP:
            time.sleep(GAP)
        ns, r = agent_request(s, {"id": i, "type": "lifecycle_run", "phase": "attach",
                                  "workspace": workspace, "devcontainer": ".devcontainer.json",
                                  "repository": "octo/app", "creator_access": access})
        out.append(ns)
        ok = r.get("ok")
        assert ok and ok["status"] == "succeeded", r
    return out, ok


def qga_execs(s, n):
    f = s.makefile("rb")
    out = []
    for _ in range(n):
        if GAP:
            time.sleep(GAP)
        t0 = time.perf_counter_ns()
        s.sendall(b'{"execute":"guest-exec","arguments":{"path":"/bin/true"}}\n')
        pid = json.loads(f.readline())["return"]["pid"]
        q = json.dumps({"execute": "guest-exec-status", "arguments": {"pid": pid}}).encode() + b"\n"
        while True:
            s.sendall(q)
            st = json.loads(f.readline())["return"]
            if st["exited"]:
                break
        out.append(time.perf_counter_ns() - t0)
        assert st.get("exitcode") == 0, st
    return out


def start(cmd, sock):
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_ready(sock, proc)
    return proc


def stop(proc):
    proc.terminate()  # by PID: only processes this script started
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class StateDirs:
    """The agents' state directories, laid out as in production where this machine allows.

    In production the state directory is `/run/codespace-agent` on the tmpfs `/run`. The layout
    matters to the measurement: the restricted sandbox denies the state directory by listing, in
    its Landlock ruleset, the entries of every directory above it (`/`, `/run`), so a state
    directory under `/dev/shm` (108 entries in `/dev` here) costs rules that production does not
    pay. As root, each agent gets a fresh tmpfs mounted at `/run/codespace-agent-bench-PID-NAME`
    (unmounted and removed afterwards); otherwise a directory under `/dev/shm` (tmpfs) is used.
    """

    def __init__(self):
        self.mounts = []
        self.fallback = None

    def __enter__(self):
        return self

    def make(self, name):
        if os.geteuid() == 0 and os.path.isdir("/run"):
            path = f"/run/codespace-agent-bench-{os.getpid()}-{name}"
            os.mkdir(path, 0o700)
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", path],
                                  capture_output=True)
            if done.returncode == 0:
                self.mounts.append(path)
                return path
            os.rmdir(path)
        if self.fallback is None:
            shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
            self.fallback = tempfile.TemporaryDirectory(dir=shm)
        return os.path.join(self.fallback.name, f"st-{name}")

    def __exit__(self, *exc):
        for path in self.mounts:
            subprocess.run(["umount", path], check=False)
            os.rmdir(path)
        if self.fallback is not None:
            self.fallback.cleanup()
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", required=True)
    ap.add_argument("--qga", default="qemu-ga")
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("--block", type=int, default=25, help="runs per path before switching")
    ap.add_argument("--gap", type=float, default=0.0, help="seconds of pause before each run")
    ap.add_argument("--json")
    args = ap.parse_args()
    global GAP
    GAP = args.gap
    key = os.urandom(32)
    results = {}
    with tempfile.TemporaryDirectory() as d, StateDirs() as state:
        key_file = os.path.join(d, "key")
        with open(key_file, "wb") as f:
            f.write(key)
        ws = tempfile.mkdtemp(dir=d)
        os.chmod(d, 0o755)
        os.chmod(ws, 0o777)
        # The creator's workspace (a uid of its own): the restricted principal sees it through
        # its idmapped view; the trusted run is the agent's user (root) here.
        os.chown(ws, 64999, 64999)
        with open(os.path.join(ws, ".devcontainer.json"), "w") as f:
            f.write('{"postAttachCommand": ["/bin/true"]}')
        procs = []
        try:
            socks = {}
            for launcher in ("plain", "sandbox"):
                conf = os.path.join(d, f"{launcher}.json")
                with open(conf, "w") as f:
                    # Restricted runs as `nobody` (the package's codespace-restricted is not on
                    # this machine), their world in the scratch directory, no NAT to set up (a
                    # one-time cost per codespace, not per command).
                    # As root the agent forks its privileged side; the network side runs as a
                    # uid of its own (the package's codespace-agent is not on this machine).
                    json.dump({"network_user": "64990:64990", "lifecycle": {"launcher": launcher},
                               "sandbox": {"restricted_user": "nobody",
                                           "restricted_root": os.path.join(d, f"restricted-{launcher}"),
                                           "restricted_outbound": False}}, f)
                sock = os.path.join(d, f"{launcher}.sock")
                procs.append(start([args.agent, "run", "--config", conf, "--listen", f"unix:{sock}",
                                    "--key-file", key_file, "--state-dir",
                                    state.make(launcher)], sock))
                socks[launcher] = agent_connect(sock, key)
            qsock = os.path.join(d, "qga.sock")
            procs.append(start([args.qga, "--method", "unix-listen", "--path", qsock,
                                "--pidfile", os.path.join(d, "qga.pid"), "--statedir", d], qsock))
            qs = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            qs.connect(qsock)
            ids = {"plain": 1, "sandbox": 1}

            def agent_case(launcher, access):
                def run(n):
                    lat, last = agent_runs(socks[launcher], ws, access, n, ids[launcher])
                    ids[launcher] += n
                    return lat, last
                return run

            cases = {
                "unsandboxed": agent_case("plain", "write"),
                "trusted": agent_case("sandbox", "write"),
                "restricted": agent_case("sandbox", "read"),
                "qemu-ga guest-exec": lambda n: (qga_execs(qs, n), None),
            }
            lat = {name: [] for name in cases}
            last = {}
            for name, run in cases.items():
                run(20)  # warm-up
            # Interleaved in blocks, each block in a rotated order, so that the machine's load
            # (shared CPUs) hits every path alike.
            names = list(cases)
            done = 0
            block = 0
            while done < args.n:
                b = min(args.block, args.n - done)
                for name in names[block % len(names):] + names[:block % len(names)]:
                    l, r = cases[name](b)
                    lat[name] += l
                    if r is not None:
                        last[name] = r
                done += b
                block += 1
            for name in cases:
                results[name] = summary(lat[name])
                if name in last:
                    results[name]["profile"] = last[name]["profile"]
                    results[name]["launcher"] = last[name]["launcher"]
            qs.close()
            for s in socks.values():
                s.close()
        finally:
            for proc in procs:
                stop(proc)
    print(f"| path (/bin/true, n={args.n}) | p50 ms | p90 ms | p99 ms | min ms |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['p50_us']/1000:.2f} | {r['p90_us']/1000:.2f} | "
              f"{r['p99_us']/1000:.2f} | {r['min_us']/1000:.2f} |")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
