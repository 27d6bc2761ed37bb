#!/usr/bin/env bash
# Demo of issue 4: start an agent on a Unix socket in a temporary directory, deliver a token and
# secrets with codespace-agentctl, land them with a `resume`, then show the environment file, a
# command run with it, and git credential answers in and out of the token's scope.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p codespace-agent --bin codespace-agent --bin codespace-agentctl
BIN=target/release
DIR="$(mktemp -d)"
AGENT_PID=""
cleanup() { [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT

head -c 32 /dev/urandom > "$DIR/key"
"$BIN/codespace-agent" run --listen "unix:$DIR/agent.sock" --state-dir "$DIR/state" --key-file "$DIR/key" \
    2> "$DIR/agent.log" &
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
step "codespace-agentctl session create --owner octocat --repository octo/app"
ctl session create --owner octocat --repository octo/app
step "cat \$STATE/env/environment"; cat "$DIR/state/env/environment"
step "codespace-agent exec -- sh -c 'echo \$DB_PASSWORD'"
"$BIN/codespace-agent" exec --state-dir "$DIR/state" -- sh -c 'echo "$DB_PASSWORD"'
step "git credential for octo/app (in scope)"
printf 'protocol=https\nhost=github.com\npath=octo/app.git\n\n' | "$BIN/codespace-agent" git-credential --state-dir "$DIR/state" get
step "git credential for octo/other (out of scope: no answer)"
printf 'protocol=https\nhost=github.com\npath=octo/other.git\n\n' | "$BIN/codespace-agent" git-credential --state-dir "$DIR/state" get
echo "(empty)"
