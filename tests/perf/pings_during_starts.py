#!/usr/bin/env python3
"""Benchmark (issue 19): ping latency on an open control connection while 20 lifecycle commands
start at once.

One agent (the sandbox launcher; as root it forks its privileged side, which starts the
commands). Two control connections: one sends pings at a steady pace from a thread, the other a
`lifecycle_run` whose `postAttachCommand` is in object form with 20 entries (the runner starts
all of them at once). The pings sent from the request until its response are the sample; the
run is repeated (default three runs back to back, restricted: the heaviest start), and p50, p99
and max of each run and of all runs together are printed (pings go out every millisecond,
whether or not the previous one was answered), with the targets (p99 < 10 ms,
max < 50 ms). Only the Python standard library.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_client import agent_connect, agent_request, recv_frame, send_frame  # noqa: E402
from lifecycle_exec import StateDirs, start, stop  # noqa: E402

COMMANDS = 20


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


class Pinger:
    """Sends a ping every `interval` seconds on its own connection (a sender thread) and reads
    the answers (a reader thread): a stalled agent shows as every ping sent during the stall
    waiting, as heartbeats and forwards would, not as one slow ping among fast ones."""

    def __init__(self, sock, interval):
        self.sock = sock
        self.interval = interval
        self.sent = {}
        self.lat = []
        self.recording = False
        self.stop = False
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.send, daemon=True),
                        threading.Thread(target=self.read, daemon=True)]

    def start(self):
        for t in self.threads:
            t.start()

    def send(self):
        i = 0
        next_at = time.perf_counter()
        while not self.stop:
            i += 1
            with self.lock:
                self.sent[i] = (time.perf_counter_ns(), self.recording)
            send_frame(self.sock, json.dumps({"id": i, "type": "ping"}).encode())
            next_at += self.interval
            time.sleep(max(0.0, next_at - time.perf_counter()))

    def read(self):
        while not self.stop:
            try:
                r = json.loads(recv_frame(self.sock))
            except OSError:
                return
            now = time.perf_counter_ns()
            if "id" not in r:
                continue  # an event
            assert r.get("ok", {}).get("pong") is True, r
            with self.lock:
                t0, recording = self.sent.pop(r["id"])
                if recording:
                    self.lat.append((now - t0) / 1e6)

    def join(self):
        self.stop = True
        for t in self.threads:
            t.join(timeout=5)


def one_run(control, pinger, ws, access, req_id):
    with pinger.lock:
        pinger.lat = []
    pinger.recording = True
    t0 = time.perf_counter()
    _, r = agent_request(control, {"id": req_id, "type": "lifecycle_run", "phase": "attach",
                                   "workspace": ws, "devcontainer": ".devcontainer.json",
                                   "repository": "octo/app", "creator_access": access})
    wall = (time.perf_counter() - t0) * 1000
    pinger.recording = False
    time.sleep(0.2)  # answers to pings sent during the run
    ok = r.get("ok")
    assert ok and ok["status"] == "succeeded", r
    assert len(ok["commands"]) == COMMANDS, ok
    with pinger.lock:
        return list(pinger.lat), wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--profile", choices=["restricted", "trusted"], default="restricted")
    ap.add_argument("--interval-ms", type=float, default=1.0, help="between two pings")
    ap.add_argument("--json")
    args = ap.parse_args()
    access = "read" if args.profile == "restricted" else "write"
    key = os.urandom(32)
    with tempfile.TemporaryDirectory() as d, StateDirs() as state:
        os.chmod(d, 0o755)
        key_file = os.path.join(d, "key")
        with open(key_file, "wb") as f:
            f.write(key)
        ws = tempfile.mkdtemp(dir=d)
        os.chmod(ws, 0o777)
        os.chown(ws, 64999, 64999)
        cmds = {f"c{i:02}": ["/bin/true"] for i in range(COMMANDS)}
        with open(os.path.join(ws, ".devcontainer.json"), "w") as f:
            json.dump({"postAttachCommand": cmds}, f)
        conf = os.path.join(d, "config.json")
        with open(conf, "w") as f:
            # As in lifecycle_exec.py; the network side runs as a uid of its own (the package's
            # codespace-agent is not on this machine).
            json.dump({"network_user": "64990:64990",
                       "lifecycle": {"launcher": "sandbox"},
                       "sandbox": {"restricted_user": "nobody",
                                   "restricted_root": os.path.join(d, "restricted"),
                                   "restricted_outbound": False}}, f)
        sock = os.path.join(d, "agent.sock")
        proc = start([args.agent, "run", "--config", conf, "--listen", f"unix:{sock}",
                      "--key-file", key_file, "--state-dir", state.make("pings")], sock)
        try:
            pinger = Pinger(agent_connect(sock, key), args.interval_ms / 1000)
            control = agent_connect(sock, key)
            pinger.start()
            one_run(control, pinger, ws, access, 1)  # warm-up (first restricted run builds its world)
            runs = []
            for i in range(args.runs):
                lat, wall = one_run(control, pinger, ws, access, 2 + i)
                runs.append(lat)
                print(f"run {i + 1}: {len(lat)} pings during {wall:.0f} ms: p50 {pct(lat, 50):.2f} ms, "
                      f"p99 {pct(lat, 99):.2f} ms, max {max(lat):.2f} ms")
            pinger.join()
            every = [x for r in runs for x in r]
            p99, mx = pct(every, 99), max(every)
            print(f"all {len(every)} pings ({args.profile}, {COMMANDS} commands x {args.runs} runs): "
                  f"p50 {pct(every, 50):.2f} ms, p99 {p99:.2f} ms (target < 10), "
                  f"max {mx:.2f} ms (target < 50)")
            if args.json:
                with open(args.json, "w") as f:
                    json.dump({"profile": args.profile, "runs": runs, "p99_ms": p99, "max_ms": mx}, f)
        finally:
            stop(proc)


if __name__ == "__main__":
    main()
