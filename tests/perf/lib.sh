# Sourced by the benchmark scripts in tests/perf/: what they all need, written once.

# The agent as it ships (packaging/build.sh: the static-pie release build); prints its path.
shipped_agent() {
    echo "$(packaging/build.sh | tail -1)/codespace-agent"
}

# qemu-ga, the peer of the qemu-ga benchmarks (Debian qemu-guest-agent, installed when missing);
# prints its path.
qemu_ga() {
    if ! command -v qemu-ga >/dev/null 2>&1 && [ ! -x /usr/sbin/qemu-ga ]; then
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        $sudo apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq qemu-guest-agent >&2
    fi
    command -v qemu-ga || echo /usr/sbin/qemu-ga
}
