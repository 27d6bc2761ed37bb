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


def main(argv):
    if len(argv) >= 4 and argv[1] == "ask":
        ask(argv[2], argv[3], argv[4:])
    elif len(argv) == 4 and argv[1] == "hmp":
        hmp(argv[2], argv[3])
    elif len(argv) == 3 and argv[1] == "sha256":
        print(hashlib.sha256(argv[2].encode()).hexdigest())
    elif len(argv) == 6 and argv[1] == "pings":
        pings(argv[2], argv[3], argv[4], int(argv[5]))
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
