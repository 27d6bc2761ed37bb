#!/usr/bin/env bash
# Benchmark (issue 19): ping latency on an open control connection while 20 lifecycle commands
# start at once (object form), three runs back to back, against the shipped build. Needs root
# (the agent forks its privileged side, which switches users and makes cgroups).
# Usage: tests/perf/pings_during_starts.sh [--runs N] [--profile restricted|trusted]
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/perf/lib.sh
AGENT="${AGENT:-$(shipped_agent)}"
mkdir -p tests/perf/out
echo "machine: $(nproc) CPUs, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 tests/perf/pings_during_starts.py --agent "$AGENT" --json tests/perf/out/pings_during_starts.json "$@"
