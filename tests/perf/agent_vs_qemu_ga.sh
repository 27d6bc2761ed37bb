#!/usr/bin/env bash
# Benchmark: codespace-agent vs qemu-ga (Debian package qemu-guest-agent) in the same run, both on
# Unix sockets: ping round trip (median), idle resident memory, time from exec to listening.
# Usage: tests/perf/agent_vs_qemu_ga.sh [PINGS] [RUNS]   (defaults 2000 pings x 3 runs)
# Results: a Markdown table on stdout and raw numbers in tests/perf/out/results.json.
set -euo pipefail
cd "$(dirname "$0")/../.."

PINGS="${1:-2000}"
RUNS="${2:-3}"

if ! command -v qemu-ga >/dev/null 2>&1 && [ ! -x /usr/sbin/qemu-ga ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq qemu-guest-agent
fi
QGA="$(command -v qemu-ga || echo /usr/sbin/qemu-ga)"

cargo build --release -q -p codespace-agent --bin codespace-agent --example ping_bench
mkdir -p tests/perf/out
echo "qemu-ga: $("$QGA" --version | head -1); codespace-agent: $(target/release/codespace-agent --version)"
echo "machine: $(nproc) CPUs, $(uname -r)"
python3 tests/perf/bench_client.py --agent target/release/codespace-agent --qga "$QGA" \
    --pings "$PINGS" --runs "$RUNS" --json tests/perf/out/results.json \
    --rust-client target/release/examples/ping_bench
