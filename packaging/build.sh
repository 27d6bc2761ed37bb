#!/bin/sh
# build.sh — build the binaries the package ships, the way it ships them; prints the directory that
# holds them on the last line.
#
#   packaging/build.sh [EXTRA CARGO BUILD ARGS...]     e.g. --example vmtest-guest
#
# codespace-agent and codespace-agentctl are built in release mode as static-pie executables
# (glibc linked in, `-C target-feature=+crt-static`, for the host's target triple), because:
#   - one binary runs on every image an image builder bakes it into, whatever glibc the image has
#     (or none: the nested-VM test boots it from an initramfs without a libc);
#   - the idle daemon maps no shared libc, libm, libgcc_s and dynamic loader: with them, 1.8 MiB of
#     its resident memory were those libraries' pages (tests/perf/README.md, "codespace-agent vs
#     qemu-ga"), and start-up skips the dynamic loader.
# The price of static glibc is that its NSS functions (getpwnam, getgrouplist, getaddrinfo, ...)
# would need the shared NSS modules at run time; the agent never calls them (it reads /etc/passwd
# and /etc/group itself, and connects only to addresses, never to names). This script fails if a
# binary links any of them, or if a binary still has a program interpreter.
#
# --target is given explicitly so that RUSTFLAGS reaches only the shipped code, not build scripts
# and proc macros (which must stay dynamic); the output therefore lands in target/TRIPLE/release.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
triple=$(rustc -vV | sed -n 's/^host: //p')
[ -n "$triple" ] || { echo "build.sh: cannot read the host target triple from rustc -vV" >&2; exit 1; }
cd "$repo"
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build -q --release --target "$triple" -p codespace-agent \
    --bin codespace-agent --bin codespace-agentctl "$@"

dir="$repo/target/$triple/release"
for bin in "$dir/codespace-agent" "$dir/codespace-agentctl"; do
    if readelf -l "$bin" | grep -q INTERP; then
        echo "build.sh: $bin is dynamically linked (has a program interpreter)" >&2
        exit 1
    fi
    nss=$(nm "$bin" | sed -n 's/.* [TtWw] \(getpw\(nam\|uid\|ent\)\(_r\)\?\|getgr\(nam\|gid\|ent\)\(_r\)\?\|getgrouplist\|initgroups\|getaddrinfo\|gethostby[a-z0-9_]*\|getservby[a-z_]*\)$/\1/p' | sort -u | tr '\n' ' ')
    if [ -n "$nss" ]; then
        echo "build.sh: $bin links glibc NSS functions that a static binary cannot serve: $nss" >&2
        exit 1
    fi
done
echo "$dir"
