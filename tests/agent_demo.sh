#!/usr/bin/env bash
# The agent end to end on this machine: start it on a Unix socket in a temporary directory, deliver
# a token and sealed secrets with codespace-agentctl, show the environment file, a command run with
# it and git credential answers in and out of the token's scope; then (as root: the sandbox needs
# cgroups) run a repository's lifecycle commands in the sandbox with redacted output, and reach the
# dev server they started through the agent's port forwarder with a signed grant.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p codespace-agent --bin codespace-agent --bin codespace-agentctl
BIN=target/release
DIR="$(mktemp -d)"
AGENT_PID=""; FWD_PID=""; SERVER_PID=""
# Stops what this script started, by PID: the agent, the forwarder and the dev server that the
# postStartCommand left running (on purpose: it outlives a successful run, as in a codespace).
cleanup() {
    for pid in $FWD_PID $SERVER_PID $AGENT_PID; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null; rm -rf "$DIR"
}
trap cleanup EXIT

head -c 32 /dev/urandom > "$DIR/key"
# As root the agent forks its network side, which runs as `network_user` (the package creates
# `codespace-agent`; here a uid of its own that owns nothing, as the tests use).
printf '{ "network_user": "64990:64990" }\n' > "$DIR/config.jsonc"
"$BIN/codespace-agent" run --config "$DIR/config.jsonc" --listen "unix:$DIR/agent.sock" \
    --state-dir "$DIR/state" --key-file "$DIR/key" 2> "$DIR/agent.log" &
AGENT_PID=$!
ctl() { "$BIN/codespace-agentctl" --connect "unix:$DIR/agent.sock" --key-file "$DIR/key" "$@"; }
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

step "codespace-agentctl ping"; ctl ping
printf 'ghs_demoToken123' > "$DIR/token"
printf '%s' '{"repositories":{"octo/app":{"contents":"write","metadata":"read"}},"fork_on_push":false,"denied":[]}' > "$DIR/scope.json"
step "codespace-agentctl token put --expires-at +8h"
ctl token put --token-file "$DIR/token" --scope-file "$DIR/scope.json" \
    --expires-at "$(date -u -d '+8 hours' +%Y-%m-%dT%H:%M:%SZ)"
printf '%s' '{"NPM_TOKEN":"npm_demo_value","DB_PASSWORD":"it'"'"'s $(not) run","LD_PRELOAD":"/evil.so"}' > "$DIR/secrets.json"
step "codespace-agentctl secrets put   (sealed here to the agent's key; LD_PRELOAD is refused)"
ctl secrets put --file "$DIR/secrets.json"
step "codespace-agentctl status   (secrets are pending until create/resume)"
ctl status | python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps({k: d[k] for k in ("secrets","pending_secrets","token")}, indent=2))'
step "codespace-agentctl session create --owner octocat --repository octo/app --creator-access write"
ctl session create --owner octocat --repository octo/app --creator-access write
step "cat \$STATE/env/environment"; cat "$DIR/state/env/environment"
step "codespace-agent exec -- sh -c 'echo \$DB_PASSWORD'"
"$BIN/codespace-agent" exec --state-dir "$DIR/state" -- sh -c 'echo "$DB_PASSWORD"'
step "git credential for octo/app (in scope)"
printf 'protocol=https\nhost=github.com\npath=octo/app.git\n\n' | "$BIN/codespace-agent" git-credential --state-dir "$DIR/state" get
step "git credential for octo/other (out of scope: no answer)"
printf 'protocol=https\nhost=github.com\npath=octo/other.git\n\n' | "$BIN/codespace-agent" git-credential --state-dir "$DIR/state" get
echo "(empty)"

if [ "$(id -u)" -ne 0 ]; then
    echo; echo "(lifecycle and ports part skipped: the sandbox needs root; run as root to see it)"
    exit 0
fi
# Lifecycle commands in the sandbox: the repository's postCreateCommand sees the secrets (trusted:
# the creator can write), its output is redacted; postStartCommand leaves a dev server running.
WS="$DIR/workspace"; mkdir -p "$WS/.devcontainer"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$WS/.devcontainer/devcontainer.json" <<JSON
{
  // JSONC: comments are fine
  "image": "mcr.microsoft.com/devcontainers/base:debian",
  "postCreateCommand": {
    "greet": "echo hello from postCreateCommand as \$(id -un)",
    "leak": ["sh", "-c", "echo trying to print NPM_TOKEN=\$NPM_TOKEN"]
  },
  "postStartCommand": "nohup python3 -m http.server --bind 127.0.0.1 $PORT >/dev/null 2>&1 &"
}
JSON
step "codespace-agentctl lifecycle run --phase create   (secret values come out [redacted])"
ctl lifecycle run --devcontainer "$WS/.devcontainer/devcontainer.json" --workspace "$WS" --phase create
step "codespace-agentctl lifecycle run --phase start   (a dev server on 127.0.0.1:$PORT)"
ctl lifecycle run --devcontainer "$WS/.devcontainer/devcontainer.json" --workspace "$WS" --phase start
sleep 1
step "codespace-agentctl ports list   (detected, private by default)"
ctl ports list | tee "$DIR/ports.json"
SERVER_PID=$(python3 -c 'import json,sys; print(next(l["pid"] for p in json.load(open(sys.argv[1]))["ports"] if p["port"]==int(sys.argv[2]) for l in p["listeners"]))' "$DIR/ports.json" "$PORT")
step "codespace-agentctl ports forward $PORT --as octocat   (the owner may; a grant signed with the host's key)"
"$BIN/codespace-agentctl" --connect "unix:$DIR/agent.sock" --key-file "$DIR/key" \
    ports forward "$PORT" --listen 127.0.0.1:0 --as octocat > "$DIR/forward.out" 2> "$DIR/forward.err" &
FWD_PID=$!
for _ in $(seq 50); do grep -q listening "$DIR/forward.out" 2>/dev/null && break; sleep 0.1; done
cat "$DIR/forward.out"
LOCAL=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["listening"])' "$DIR/forward.out")
python3 -c 'import sys,urllib.request; r=urllib.request.urlopen("http://"+sys.argv[1]+"/", timeout=5); print("GET http://%s/ through the agent: HTTP %d" % (sys.argv[1], r.status))' "$LOCAL"
