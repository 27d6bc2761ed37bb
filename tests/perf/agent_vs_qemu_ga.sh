#!/usr/bin/env bash
# Benchmark: codespace-agent vs qemu-ga (Debian package qemu-guest-agent) in the same run, both on
# Unix sockets: ping round trip (median), idle resident memory, time from exec to listening.
# Usage: tests/perf/agent_vs_qemu_ga.sh [PINGS] [RUNS]   (defaults 2000 pings x 3 runs)
#        PIN=CPU tests/perf/agent_vs_qemu_ga.sh ...      every process (agents and clients) on one CPU
# On a VM, a round trip between processes on two vCPUs costs a cross-vCPU wake-up (an IPI through
# the hypervisor, tens of microseconds when the other vCPU is halted); PIN=0 takes that out, so
# the ratio shows the agents' own cost per request. Both agents always run under the same setting.
# Results: a Markdown table on stdout and raw numbers in tests/perf/out/results.json.
set -euo pipefail
cd "$(dirname "$0")/../.."

PINGS="${1:-2000}"
RUNS="${2:-3}"

. tests/perf/lib.sh
QGA="$(qemu_ga)"
# The agent as it ships; the client a normal build.
AGENT="$(shipped_agent)"
cargo build --release -q -p codespace-agent --example ping_bench
mkdir -p tests/perf/out
echo "qemu-ga: $("$QGA" --version | head -1); codespace-agent: $("$AGENT" --version) ($AGENT)"
echo "machine: $(nproc) CPUs, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)${PIN:+, all pinned to CPU $PIN}"
${PIN:+taskset -c "$PIN"} python3 tests/perf/bench_client.py --agent "$AGENT" --qga "$QGA" \
    --pings "$PINGS" --runs "$RUNS" --json tests/perf/out/results.json \
    --rust-client target/release/examples/ping_bench
