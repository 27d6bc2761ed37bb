#!/usr/bin/env bash
# Benchmark: request-to-exit time of `/bin/true` through the agent's lifecycle runner
# (unsandboxed, trusted, restricted) against qemu-ga's guest-exec + guest-exec-status, in the
# same run, both on Unix sockets. Needs root (the sandbox switches users and makes cgroups).
# Usage: tests/perf/lifecycle_exec.sh [N] [--gap SECONDS] [--block B]
#        (default 300 runs per path after 20 warm-ups, paths interleaved in blocks of 25)
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-300}"
shift || true   # further options go to lifecycle_exec.py (--block, --gap)
. tests/perf/lib.sh
QGA="$(qemu_ga)"
AGENT="$(shipped_agent)"
mkdir -p tests/perf/out
echo "machine: $(nproc) CPUs, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg); $("$QGA" --version | head -1)"
python3 tests/perf/lifecycle_exec.py --agent "$AGENT" --qga "$QGA" \
    -n "$N" --json tests/perf/out/lifecycle_exec.json "$@"
