#!/usr/bin/env bash
# Benchmark (issue 18): what the agent costs when nothing happens. Starts the shipped agent as
# root (it forks its network side), connects nothing, and reads the CPU time both processes and
# all their threads spent over SECONDS (/proc/PID/task/*/schedstat, nanoseconds). The idle clock
# sleeps until its deadlines (one wakeup per timeout period), so what shows here is the rest of
# the agent's background work: port detection (a sock_diag dump every poll_interval_ms, 150),
# the heartbeat tick (30 s), and the restricted-network question the network side asks the
# privileged side at each poll.
# Usage: tests/perf/idle_cost.sh [SECONDS]   (default 120; needs root)
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS="${1:-120}"
. tests/perf/lib.sh
[ "$(id -u)" = 0 ] || { echo "tests/perf/idle_cost.sh: needs root (the agent forks its network side as root)" >&2; exit 1; }
AGENT="$(shipped_agent)"
DIR="$(mktemp -d)"
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
head -c 32 /dev/urandom > "$DIR/key"
printf '{ "network_user": "64990:64990" }\n' > "$DIR/config.jsonc"
"$AGENT" run --config "$DIR/config.jsonc" --listen "unix:$DIR/agent.sock" --state-dir "$DIR/state" \
    --key-file "$DIR/key" 2> "$DIR/agent.log" &
PID=$!
for _ in $(seq 100); do [ -S "$DIR/agent.sock" ] && break; sleep 0.05; done
sleep 2
NET=$(tr -d " \n" < "/proc/$PID/task/$PID/children")
cpu_ns() { # PID: CPU time of all its threads, ns
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'
}
p0=$(cpu_ns "$PID"); n0=$(cpu_ns "$NET")
sleep "$SECS"
p1=$(cpu_ns "$PID"); n1=$(cpu_ns "$NET")
echo "machine: $(nproc) CPUs, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v p=$((p1 - p0)) -v n=$((n1 - n0)) -v s="$SECS" 'BEGIN {
    printf "over %d s: privileged side %.1f ms, network side %.1f ms; together %.4f%% of one core\n",
        s, p / 1e6, n / 1e6, (p + n) / (s * 1e9) * 100 }'
