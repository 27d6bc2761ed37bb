#!/usr/bin/env python3
"""The status flood of issue 16 (part 4) against the shipped agent: C authenticated control
connections each pipeline R `status` requests, then read every answer. Reports the agent's peak
and settled thread count and VmRSS / RssAnon (sampled from /proc every 10 ms), how many answers
were `busy`, and the time it took. Unix socket only; bounded by C x R.

  tests/perf/status_flood.py --agent target/TRIPLE/release/codespace-agent [-c 60] [-r 2000]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from bench_client import agent_connect, recv_frame, send_frame, wait_ready  # noqa: E402


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Threads", "VmRSS", "RssAnon"):
                out[key] = int(value.split()[0])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", required=True)
    ap.add_argument("-c", "--connections", type=int, default=60)
    ap.add_argument("-r", "--requests", type=int, default=2000)
    ap.add_argument("--write-first", action="store_true",
                    help="send every request before reading any answer (a client that does not "
                         "read: the agent's answer queues fill)")
    ap.add_argument("--heartbeat", type=int, default=1,
                    help="the agent's heartbeat_interval_s (it gives freed heap back per tick)")
    args = ap.parse_args()
    key = os.urandom(32)
    with tempfile.TemporaryDirectory() as d:
        key_file = os.path.join(d, "key")
        with open(key_file, "wb") as f:
            f.write(key)
        sock = os.path.join(d, "agent.sock")
        conf = os.path.join(d, "config.json")
        with open(conf, "w") as f:
            json.dump({"heartbeat_interval_s": args.heartbeat}, f)
        proc = subprocess.Popen([args.agent, "run", "--config", conf, "--listen", f"unix:{sock}",
                                 "--key-file",
                                 key_file, "--state-dir", os.path.join(d, "state")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(sock, proc)
            time.sleep(0.5)
            before = proc_status(proc.pid)
            peak = dict(before)
            done = threading.Event()

            def sample():
                while not done.is_set():
                    now = proc_status(proc.pid)
                    for k, v in now.items():
                        peak[k] = max(peak.get(k, 0), v)
                    time.sleep(0.01)

            sampler = threading.Thread(target=sample)
            sampler.start()
            conns = [agent_connect(sock, key) for _ in range(args.connections)]
            answers = {"ok": 0, "busy": 0, "other": 0}
            lock = threading.Lock()

            def read_all(s):
                got = 0
                try:
                    while got < args.requests:
                        r = json.loads(recv_frame(s))
                        if "id" not in r:
                            continue  # an event
                        got += 1
                        kind = "ok" if "ok" in r else (
                            "busy" if r.get("error", {}).get("code") == "busy" else "other")
                        with lock:
                            answers[kind] += 1
                except OSError:
                    with lock:
                        answers["closed"] = answers.get("closed", 0) + 1

            def flood(s):
                reader = None
                if not args.write_first:
                    reader = threading.Thread(target=read_all, args=(s,))
                    reader.start()
                try:
                    for i in range(1, args.requests + 1):
                        send_frame(s, json.dumps({"id": i, "type": "status"}).encode())
                except OSError:
                    pass
                if reader is None:
                    read_all(s)
                else:
                    reader.join()

            t0 = time.perf_counter()
            workers = [threading.Thread(target=flood, args=(s,)) for s in conns]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            took = time.perf_counter() - t0
            for s in conns:
                s.close()
            time.sleep(3.5)  # a heartbeat (malloc_trim) and the blocking pool's keep-alive
            done.set()
            sampler.join()
            after = proc_status(proc.pid)
            print(f"status flood {args.connections}x{args.requests} in {took:.2f} s: {answers}")
            for k in ("Threads", "VmRSS", "RssAnon"):
                unit = "" if k == "Threads" else " kB"
                print(f"  {k}: before {before[k]}{unit}, peak {peak[k]}{unit}, "
                      f"3.5 s after {after[k]}{unit}")
        finally:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
