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
if ! command -v qemu-ga >/dev/null 2>&1 && [ ! -x /usr/sbin/qemu-ga ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq qemu-guest-agent
fi
QGA="$(command -v qemu-ga || echo /usr/sbin/qemu-ga)"
# The agent as it ships (packaging/build.sh: static-pie release build).
AGENT="$(packaging/build.sh | tail -1)/codespace-agent"
mkdir -p tests/perf/out
echo "machine: $(nproc) CPUs, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg); $("$QGA" --version | head -1)"
python3 tests/perf/lifecycle_exec.py --agent "$AGENT" --qga "$QGA" \
    -n "$N" --json tests/perf/out/lifecycle_exec.json "$@"
