#!/usr/bin/env bash
# Port-forwarding benchmark (issue 5): 1 GiB throughput and connection set-up latency through the
# agent's forwarder (client → Unix socket → codespace-agent → TCP), socat doing the same Unix → TCP
# relay, and a direct TCP connection (the ceiling), in one run on loopback. Prints a Markdown
# table and the ratios against the targets. Extra arguments go to the benchmark binary:
#   --gib N (default 1)   --rounds N (throughput runs per path, interleaved, default 9)
#   --connections N (set-up samples per path, default 2000)
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v socat >/dev/null 2>&1; then
    echo "ports_forward.sh: needs socat (sudo apt-get install -y socat)" >&2
    exit 1
fi
. tests/perf/lib.sh
# The agent as it ships; the bench a normal build.
AGENT="$(shipped_agent)"
cargo build --release -q -p codespace-agent --example forward_bench
echo "machine: $(nproc) cores, $(uname -m), kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg), $(socat -V 2>/dev/null | sed -n 2p | sed 's/^socat //')"
target/release/examples/forward_bench "$AGENT" "$@"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
