#!/usr/bin/env python3
"""Host-side helpers of the VM end-to-end test (tests/vm/run.sh). Unix sockets only: this never
opens AF_VSOCK.

  host.py ask UDS PORT REQUEST...   send each REQUEST line to the guest checker on vsock PORT
                                    through the hybrid socket UDS ("CONNECT PORT\\n" / "OK n\\n");
                                    print one answer per request (ENV answers: VAR lines + END)
  host.py hmp SOCK COMMAND          run one QEMU monitor (HMP) command, print its output
  host.py sha256 VALUE              print the SHA-256 of VALUE (to compare with ENV/SHELL answers)
  host.py pings UDS PORT KEYFILE N  N sequential pings on one authenticated control connection;
                                    prints "p50_us=.. p90_us=.. p99_us=.. max_us=.. n=N"
  host.py echo ADDR SIZE [half-close]
                                    send SIZE random bytes to an echo at ADDR (tcp:HOST:PORT, or
                                    hybrid:UDS:PORT for a vsock port), sending and receiving at
                                    once; fail unless the same bytes come back; prints
                                    "bytes=.. ms=.. mib_s=.." (MiB/s each way). With half-close,
                                    shut down the sending side after the last byte and read to
                                    end of stream; otherwise read SIZE bytes, then close
  host.py event FILE NAME PORT      print the first event NAME for PORT in FILE (the JSON lines of
                                    `codespace-agentctl events`); exit 1 if there is none
  host.py run UDS PORT SECS [hash]  run the shell script on stdin in the guest as root (the
                                    checker's RUN, killed after SECS); print its output (stdout
                                    and stderr) and exit with its status. With hash (RUN_HASH):
                                    print only the SHA-256 of its stdout, its stderr to stderr
  host.py wait UDS PORT SECS        retry until the checker on PORT answers (it may start after
                                    the agent), at most SECS seconds
"""
import hashlib
import os
import socket
import sys
import time

TIMEOUT = 20.0


def read_line(s):
    # Byte by byte: nothing after the line is swallowed (the hybrid "OK n" preamble).
    out = bytearray()
    while True:
        b = s.recv(1)
        if not b:
            raise EOFError("connection closed after %r" % bytes(out))
        if b == b"\n":
            return out.decode("utf-8", "replace")
        out += b


def hybrid(uds, port):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect(uds)
    s.sendall(b"CONNECT %d\n" % port)
    line = read_line(s)
    if not line.startswith("OK "):
        raise RuntimeError("CONNECT %d: %r" % (port, line))
    return s


def ask(uds, port, requests):
    s = hybrid(uds, int(port))
    for req in requests:
        s.sendall(req.encode() + b"\n")
        line = read_line(s)
        print(line)
        if req.startswith("ENV ") and line.startswith("VAR "):
            while True:
                line = read_line(s)
                print(line)
                if line == "END":
                    break
    s.close()


def hmp(path, command):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect(path)
    buf = b""
    while b"(qemu) " not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise EOFError("monitor closed")
        buf += chunk
    s.sendall(command.encode() + b"\n")
    buf = b""
    while b"(qemu) " not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    s.close()
    print(buf.decode("utf-8", "replace").replace("(qemu) ", "").strip())


def pings(uds, port, keyfile, n):
    # The control protocol's handshake lives in tests/perf/bench_client.py; reuse it.
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "perf"))
    import bench_client  # noqa: E402

    import base64
    import hmac
    import json

    key = open(keyfile, "rb").read()
    s = hybrid(uds, int(port))
    # Same handshake as bench_client.agent_connect, on the hybrid stream.
    hello = json.dumps({"type": "hello", "versions": [1], "role": "control",
                        "nonce": base64.b64encode(os.urandom(32)).decode()}).encode()
    bench_client.send_frame(s, hello)
    welcome = bench_client.recv_frame(s)
    proof = hmac.new(key, bench_client.transcript(bench_client.HOST_LABEL, [hello, welcome]),
                     hashlib.sha256).digest()
    auth = json.dumps({"type": "auth", "proof": base64.b64encode(proof).decode()}).encode()
    bench_client.send_frame(s, auth)
    ok = json.loads(bench_client.recv_frame(s))
    if ok.get("type") != "ok":
        raise RuntimeError("handshake refused: %r" % ok)
    lat = [ns / 1000.0 for ns in bench_client.agent_pings(s, n)]
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))]
    print("n=%d p50_us=%.0f p90_us=%.0f p99_us=%.0f max_us=%.0f" % (n, q(0.5), q(0.9), q(0.99), lat[-1]))


def echo(addr, size, half_close=False):
    import threading

    kind, _, rest = addr.partition(":")
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        s = socket.create_connection((host, int(port)), timeout=TIMEOUT)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    elif kind == "hybrid":
        uds, _, port = rest.rpartition(":")
        s = hybrid(uds, int(port))
    else:
        raise ValueError("address must be tcp:HOST:PORT or hybrid:UDS:PORT, not %r" % addr)
    s.settimeout(120.0)
    data = os.urandom(size)
    errors = []

    def send():
        try:
            view = memoryview(data)
            for off in range(0, size, 1 << 16):
                s.sendall(view[off:off + (1 << 16)])
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except Exception as e:  # reported by the receiving side
            errors.append(e)

    t0 = time.monotonic()
    sender = threading.Thread(target=send)
    sender.start()
    back = bytearray()
    while half_close or len(back) < size:
        chunk = s.recv(1 << 16)
        if not chunk:
            break
        back += chunk
    elapsed = time.monotonic() - t0
    sender.join()
    s.close()
    if errors:
        raise RuntimeError("sending failed: %s" % errors[0])
    if bytes(back) != data:
        first = next((i for i, (a, b) in enumerate(zip(back, data)) if a != b), min(len(back), size))
        raise RuntimeError("echo differs: sent %d bytes, got %d back, first difference at %d"
                           % (size, len(back), first))
    print("bytes=%d ms=%.0f mib_s=%.2f" % (size, elapsed * 1000, size / elapsed / (1 << 20)))


def event(path, name, port):
    import json

    for line in open(path, encoding="utf-8", errors="replace"):
        try:
            e = json.loads(line)
        except ValueError:
            continue
        flat = e if "port" in e else {**e, **(e.get("fields") or {})}
        if name in (e.get("event"), e.get("name"), e.get("type")) and flat.get("port") == port:
            print(json.dumps(e, sort_keys=True))
            return 0
    return 1


def run(uds, port, secs, hashed):
    import base64
    import json

    script = base64.b64encode(sys.stdin.buffer.read()).decode()
    s = hybrid(uds, int(port))
    s.settimeout(secs + TIMEOUT)
    s.sendall(("%s %d %s\n" % ("RUN_HASH" if hashed else "RUN", secs, script)).encode())
    line = read_line(s)
    s.close()
    if not line.startswith("OK "):
        raise RuntimeError("the checker answered %r" % line[:200])
    if hashed:
        _, rc, digest, err = line.split(" ", 3)
        print(digest)
        sys.stderr.write(json.loads(err))
    else:
        _, rc, out = line.split(" ", 2)
        sys.stdout.write(json.loads(out))
    return int(rc)


def wait(uds, port, secs):
    deadline = time.monotonic() + secs
    while True:
        try:
            s = hybrid(uds, int(port))
            s.sendall(b"MODULES\n")
            read_line(s)
            s.close()
            return 0
        except (OSError, EOFError, RuntimeError) as e:
            if time.monotonic() > deadline:
                raise RuntimeError("no answer from the checker on port %s within %d s: %s" % (port, secs, e))
            time.sleep(0.5)


def main(argv):
    if len(argv) >= 4 and argv[1] == "ask":
        ask(argv[2], argv[3], argv[4:])
    elif len(argv) == 4 and argv[1] == "hmp":
        hmp(argv[2], argv[3])
    elif len(argv) == 3 and argv[1] == "sha256":
        print(hashlib.sha256(argv[2].encode()).hexdigest())
    elif len(argv) == 6 and argv[1] == "pings":
        pings(argv[2], argv[3], argv[4], int(argv[5]))
    elif len(argv) in (4, 5) and argv[1] == "echo" and argv[4:] in ([], ["half-close"]):
        echo(argv[2], int(argv[3]), half_close=len(argv) == 5)
    elif len(argv) == 5 and argv[1] == "event":
        return event(argv[2], argv[3], int(argv[4]))
    elif len(argv) in (5, 6) and argv[1] == "run" and argv[5:] in ([], ["hash"]):
        return run(argv[2], argv[3], int(argv[4]), hashed=len(argv) == 6)
    elif len(argv) == 5 and argv[1] == "wait":
        return wait(argv[2], argv[3], int(argv[4]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Exception as e:  # one clear line instead of a traceback in the test log
        print("host.py: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        sys.exit(1)
