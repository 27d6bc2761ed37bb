#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/seeds/<target>/: hand-written inputs that reach deep
states (a valid hello, a credential request naming the token's host, a policy key ...).
The line-based targets' seeds are plain text; the byte-level ones are built here because
they carry length prefixes. Run from fuzz/: python3 seeds/make_seeds.py"""
import json, os, struct, base64

ROOT = os.path.dirname(os.path.abspath(__file__))
NONCE = base64.b64encode(bytes(32)).decode()


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def line(obj):
    return json.dumps(obj, separators=(",", ":"))


def frame(obj):
    p = obj if isinstance(obj, bytes) else line(obj).encode()
    return struct.pack(">I", len(p)) + p


SCOPE = {"repositories": {"octo/app": {"contents": "write", "metadata": "read"}},
         "fork_on_push": False, "denied": []}
REQUESTS = {
    "ping": {"id": 1, "type": "ping"},
    "status": {"id": 2, "type": "status", "timeout_ms": 1000},
    "token_put": {"id": 3, "type": "token_put", "value": "ghu_fuzztoken0123456789",
                  "expires_at": "2099-01-01T00:00:00Z", "scope": SCOPE, "host": "GitHub.com"},
    "secrets_put": {"id": 4, "type": "secrets_put", "secrets": [
        {"name": "API_KEY", "generation": 1, "plaintext": "s3cret-value"},
        {"name": "MULTI", "generation": 1, "plaintext": "it's\nline two $(id)"},
        {"name": "RANDOM", "generation": 1, "plaintext": "x[$(id)]"},
        {"name": "api_key", "generation": 2, "plaintext": "dup"},
        {"name": "GITHUB_X", "generation": 1, "plaintext": "v"}]},
    "session_create": {"id": 5, "type": "session", "event": "create", "codespace": {
        "owner": "mona", "organization": "octo", "repository": "octo/app",
        "creator_access": "write"}},
    "session_resume": {"id": 6, "type": "session", "event": "resume"},
    "session_suspend": {"id": 7, "type": "session", "event": "suspend"},
    "ports_list": {"id": 8, "type": "ports_list", "limit": 10, "after": 0},
    "ports_visibility": {"id": 9, "type": "ports_visibility", "port": 3000, "visibility": "public"},
    "ports_visibility_owner_only": {"id": 10, "type": "ports_visibility", "port": 22, "visibility": "org"},
    "grant_key_put": {"id": 11, "type": "grant_key_put", "key": base64.b64encode(b"G" * 32).decode()},
    "forward_tickets": {"id": 12, "type": "forward_tickets", "count": 3},
    "lifecycle_run": {"id": 13, "type": "lifecycle_run", "phase": "create", "workspace": "@ws",
                      "devcontainer": ".devcontainer/devcontainer.json", "creator_access": "write",
                      "repository": "octo/app", "timeout_s": 5},
    "lifecycle_run_restricted": {"id": 14, "type": "lifecycle_run", "phase": "start",
                                 "workspace": "@ws", "devcontainer": ".devcontainer/devcontainer.json",
                                 "creator_access": "read", "pull_request_from_fork": True,
                                 "approve": True},
    "extensions_install": {"id": 15, "type": "extensions_install", "workspace": "@ws",
                           "devcontainer": ".devcontainer/devcontainer.json",
                           "creator_access": "write"},
    "extensions_list": {"id": 16, "type": "extensions_install", "workspace": "@ws",
                        "extensions": ["ms-python.python", "../../x.vsix"]},
}

# request: one request per seed, and a session that uses them in order.
for name, req in REQUESTS.items():
    write("request", name, line(req) + "\n")
order = ["token_put", "secrets_put", "session_create", "ports_visibility", "forward_tickets",
         "lifecycle_run", "session_suspend", "status"]
write("request", "sequence", "".join(line(REQUESTS[n]) + "\n" for n in order))

# handshake: flags byte (bit 0 no key, bit 1 computed proof, bit 2 early data), then lines.
HELLO = {"type": "hello", "versions": [1], "role": "control", "nonce": NONCE}
FWD = {"type": "hello", "versions": [1], "role": "forward", "nonce": NONCE,
       "forward": {"port": 3000, "grant": "@grant"}}
TICKET = {"type": "hello", "versions": [1], "role": "forward", "nonce": NONCE,
          "forward": {"port": 3000, "grant": "@grant", "ticket": "@ticket"}}
body = "".join(line(REQUESTS[n]) + "\n" for n in order if n != "lifecycle_run")
write("handshake", "control_proven", b"\x02" + (line(HELLO) + "\n" + body).encode())
write("handshake", "control_no_key", b"\x01" + (line(HELLO) + "\n" + body).encode())
write("handshake", "control_wrong_proof",
      b"\x00" + (line(HELLO) + "\n" + line({"type": "auth", "proof": NONCE}) + "\n").encode())
write("handshake", "version_mismatch", b"\x02" + (line(dict(HELLO, versions=[7])) + "\n").encode())
write("handshake", "forward_full", b"\x02" + (line(FWD) + "\n").encode())
write("handshake", "forward_ticket_early", b"\x06" + (line(TICKET) + "\nGET / HTTP/1.1\n").encode())
write("handshake", "forward_ticket_forged",
      b"\x00" + (line(TICKET) + "\n" + line({"type": "auth", "proof": NONCE}) + "\n").encode())
write("handshake", "ticket_on_control",
      b"\x02" + (line(dict(HELLO, forward={"port": 3000, "grant": {}, "ticket": "@ticket"})) + "\n").encode())

# host: flags (bits 0-1 path: 0 control, 1 forward, 2 forward with ticket, 3 hybrid; bit 2 an
# honest handshake first; bit 3 silence instead of a close; bit 4 the host has no key), then
# the agent's bytes.
HONEST = 4
ok_status = frame({"id": 1, "ok": {"version": "0.1.0", "health": {"load": [0.1]}}})
ok_ping = frame({"id": 2, "ok": {"pong": True}})
event = frame({"event": "heartbeat", "uptime_s": 3})
write("host", "control_answers", bytes([HONEST]) + event + ok_status + ok_ping + frame({"id": 3, "ok": {}}))
write("host", "control_remote_errors", bytes([HONEST]) + frame(
    {"id": 1, "error": {"code": "busy", "message": "later"}}) + frame({"id": 2, "error": {"code": "nope", "message": "x"}}))
write("host", "control_fatal_error", bytes([HONEST]) + frame({"type": "error", "error": {"code": "shutting_down", "message": "bye"}}))
write("host", "control_oversized", bytes([HONEST]) + struct.pack(">I", 0xFFFFFFF0))
write("host", "control_silence", bytes([HONEST | 8]) + event)
write("host", "control_event_flood", bytes([HONEST]) + frame(
    {"event": "noise", "pad": "x" * 3000}) * 4 + ok_status)
write("host", "control_wrong_ids", bytes([HONEST]) + frame({"id": 99, "ok": 1}) + frame({"id": None, "ok": 1})
      + frame({"id": 1, "error": "malformed"}))
write("host", "raw_welcome", b"\x00" + frame({"type": "welcome", "version": 1, "agent_id": "a", "boot_id": "b",
                                              "capabilities": [], "public_key": NONCE, "nonce": NONCE,
                                              "auth": "hmac-sha256"}) + frame({"type": "ok", "proof": NONCE}))
write("host", "raw_welcome_no_auth", bytes([16]) + frame({"type": "welcome", "version": 1, "agent_id": "a",
                                                      "boot_id": "b", "capabilities": [], "public_key": NONCE,
                                                      "nonce": NONCE, "auth": "none"}) + frame({"type": "ok"}) + ok_status)
write("host", "raw_refusal", b"\x00" + frame({"type": "error", "error": {"code": "busy", "message": "full"}}))
forward_ok = frame({"type": "forward_ok", "port": 3000, "target": "127.0.0.1:3000", "epoch": 1}) + b"HTTP/1.1 200 OK\r\n\r\n"
refused = frame({"type": "error", "reason": "stale-epoch", "error": {"code": "unauthorized", "message": "stale-epoch: 2"}})
write("host", "forward_ok", bytes([1 | HONEST]) + forward_ok)
write("host", "forward_refused", bytes([1 | HONEST]) + refused)
write("host", "forward_ticket_ok", bytes([2 | HONEST]) + forward_ok)
write("host", "forward_ticket_unknown", bytes([2]) + frame({"type": "error", "reason": "ticket-unknown",
                                                           "error": {"code": "unauthorized", "message": "ticket-unknown"}}))
write("host", "hybrid_ok", bytes([3 | HONEST]) + b"OK 1073741824\n" + ok_status + ok_ping)
write("host", "hybrid_garbage", bytes([3]) + b"HTTP/1.1 400 Bad Request\r\n")

# grant: flags (bit 0 re-sign), then JSON grants and texts, one a line.
g = {"principal": {"login": "mona", "organizations": ["octo"], "authenticated_at": 1764118800},
     "port": 3000, "epoch": 7, "expires_at": 1764129600, "mac": NONCE}
write("grant", "principal", b"\x01" + (line(g) + "\n" + line(dict(g, principal=None)) + "\n").encode())
write("grant", "anonymous", b"\x01" + (line(dict(g, principal=None)) + "\n" + NONCE + "\n").encode())
write("grant", "ticket_texts", b"\x00" + ("\n".join([NONCE, "AAAA", base64.b64encode(b"G" * 32).decode(),
                                                   NONCE[:-1] + "B"]) + "\n").encode())
write("grant", "ambiguity", b"\x01" + (line(dict(g, principal={"login": "ab", "organizations": ["c"], "authenticated_at": 1}))
                                      + "\n" + line(dict(g, principal={"login": "a", "organizations": ["bc"], "authenticated_at": 1}))
                                      + "\n").encode())

# netlink: seq byte, then a sock_diag datagram or /proc/net/tcp text.
def diag(seq, family, port, addr, uid, inode, state=10):
    msg = bytes([family, state, 0, 0]) + struct.pack(">HH", port, 0) + addr.ljust(16, b"\0") + bytes(16)
    msg += bytes(4 + 8)  # if, cookie
    msg += bytes(12) + struct.pack("<II", uid, inode)  # expires rqueue wqueue, uid, inode
    return struct.pack("<IHHII", 16 + len(msg), 20, 2, seq, 0) + msg
done = struct.pack("<IHHII", 20, 3, 2, 7, 0) + struct.pack("<i", 0)
write("netlink", "sock_diag", bytes([7]) + diag(7, 2, 3000, bytes([127, 0, 0, 1]), 1000, 3)
      + diag(7, 10, 8080, bytes(15) + b"\x01", 0, 6) + done)
write("netlink", "sock_diag_error", bytes([7]) + struct.pack("<IHHII", 20, 2, 0, 7, 0) + struct.pack("<i", -13))
write("netlink", "procnet", b"\x00" + (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    "   0: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 2 1 0000000000000000 100 0 0 10 0\n"
    "   1: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7 1\n"
    "   2: 0100007F:0016 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 99 1\n"
    "socket:[5]\n").encode())

# envfile: name NUL value NUL ...
write("envfile", "plain", b"API_KEY\0s3cret\0MULTI\0line one\nit's line two\0")
write("envfile", "specials", b"V\0$(touch \"$MARKER\") `touch \"$MARKER\"` \\ \"\0W\0'\0X\0\xff\xfe\n\n\0")
write("envfile", "denied_name", b"RANDOM\0x[$(touch \"$MARKER\")]\0OK_NAME\01\0")

# frame: a read-size byte, then the stream.
write("frame", "hello", b"\x03" + frame(HELLO) + frame({"id": 1, "type": "ping"}))
write("frame", "truncated", b"\x01" + frame(HELLO)[:-3])
write("frame", "oversized", b"\x0f" + struct.pack(">I", 65) + b"{" * 10)
write("frame", "not_object", b"\x00" + frame(b"[1,2]") + frame(b"{\"a\":}"))

# credential: git's credential helper protocol, naming the token's host (libFuzzer does not
# learn the case-insensitive comparison) and in-scope and out-of-scope paths.
write("credential", "in_scope", "get\nprotocol=https\nhost=github.com\npath=Octo/App.git\n\n")
write("credential", "host_case", "get\nprotocol=https\nhost=GitHub.COM\npath=octo/lib\n")
write("credential", "out_of_scope", "get\nprotocol=https\nhost=github.com\npath=octo/other.git\nusername=x\n\n")
write("credential", "traversal", "get\nprotocol=https\nhost=github.com\npath=octo/app/../../evil/x.git\n")
write("credential", "no_path", "get\nprotocol=https\nhost=github.com:443\n\n")
write("credential", "store", "store\nprotocol=https\nhost=github.com\nusername=x\npassword=y\n")

# registry: the Docker helper's requests on the broker socket, server URLs in Docker's forms,
# and ~/.docker/config.json files for the credHelpers merge (the target tries every input as
# all three).
write("registry", "get_url", "docker-get\nhttps://ghcr.io/v2/\n\n")
write("registry", "get_lookalike", "docker-get\nghcr.io.evil.com\n\n")
write("registry", "list", "docker-list\n\n")
write("registry", "server_url", "https://user@GHCR.io:443/v2/")
write("registry", "config", '{"auths": {"ghcr.io": {"auth": "dXNlcjpwYXNz"}}, "credHelpers": {"gcr.io": "gcloud", "old.example": "codespace"}, "psFormat": "table"}')

# signing: the helper's requests (a commit and a tag git would sign, a blob, another
# committer), a broker answer with an SSH signature, an OpenPGP armor.
COMMIT = ("tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n"
          "parent a3c1e5f7b9d1f3a5c7e9b1d3f5a7c9e1b3d5f7a9\n"
          "author Mona <mona@example.com> 1700000000 +0000\n"
          "committer Mona <mona@example.com> 1700000000 +0000\n"
          "mergetag object x\n type commit\n \n m\n\nsigned\n")
TAG = ("object a3c1e5f7b9d1f3a5c7e9b1d3f5a7c9e1b3d5f7a9\ntype commit\ntag v1\n"
       "tagger Mona <Mona@Example.com> 1700000000 +0100\n\nv1\n")
write("signing", "commit_ssh", "codespace-sign/1 sign ssh\n" + COMMIT)
write("signing", "tag_openpgp", "codespace-sign/1 sign openpgp\n" + TAG)
write("signing", "blob", "codespace-sign/1 sign ssh\nhello\n")
write("signing", "other_committer", "codespace-sign/1 sign ssh\n" + COMMIT.replace("committer Mona <mona@", "committer Eve <eve@"))
write("signing", "enabled", "codespace-sign/1 enabled\n")
SSHSIG = b"SSHSIG" + struct.pack(">I", 1) + b"".join(struct.pack(">I", len(f)) + f for f in [b"key", b"git", b"", b"sha512", b"sig"])
write("signing", "answer_ssh", "signature\n-----BEGIN SSH SIGNATURE-----\n" + base64.b64encode(SSHSIG).decode() + "\n-----END SSH SIGNATURE-----\n")
PGP = bytes([0x88, 12, 4, 0, 22, 10, 0, 6, 5, 2, 0x65, 0x53, 0xf1, 0, 0, 0])
write("signing", "armor_pgp", "-----BEGIN PGP SIGNATURE-----\n\n" + base64.b64encode(PGP).decode() + "\n=AbCd\n-----END PGP SIGNATURE-----\n")

# policy_document: an organization policy with every key, and the CLI topics' inputs.
POLICY = {"trusted_repositories": ["octo/app", "octo/*"], "port_visibility": ["org"],
          "extensions": {"allow": ["ms-python", "ms-*"], "deny": ["evil"], "allow_vsix": False},
          "features": ["ghcr.io/devcontainers/features/*"],
          "images": {"allow": ["mcr.microsoft.com/devcontainers/*"]},
          "lifecycle_commands": "trusted-only", "idle_timeout_minutes": 30,
          "secrets": {"deny_names": ["AWS_*", "NPM_TOKEN"]}}
write("policy_document", "policy", "// org policy\n" + json.dumps(POLICY, indent=1) + "\n")
write("policy_document", "port_access", line({
    "codespace": {"owner": "mona", "organization": "octo"}, "visibility": "org",
    "principal": {"login": "hubot", "organizations": ["octo"], "authenticated_at": "2025-01-01T00:00:00Z"},
    "now": "2025-01-01T01:00:00Z", "org_policy": POLICY}))
write("policy_document", "token_scope", line({
    "repository": "octo/app", "access": {"octo/app": "write", "octo/lib": "read"},
    "pull_request": {"head": "fork/app", "base": "octo/app", "base_private": True}, "fork": "fork/app",
    "requested": {"octo/lib": {"permissions": {"contents": "read", "issues": "write"}}},
    "authorized": True, "prebuild": False, "org_policy": None}))
write("policy_document", "port_replay", line({"org_policy": None, "events": [
    {"op": "add", "port": 3000}, {"op": "set_visibility", "port": 3000, "visibility": "public"},
    {"op": "policy", "org_policy": {"port_visibility": []}}, {"op": "restart"},
    {"op": "remove", "port": 3000}]}))
