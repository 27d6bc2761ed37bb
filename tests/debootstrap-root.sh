#!/bin/sh
# tests/debootstrap-root.sh — a clean Debian root made with debootstrap, cached (needs root).
#
#   tests/debootstrap-root.sh DEST [PACKAGE,PACKAGE,...]
#
# Builds `debootstrap --variant=minbase bookworm` (plus --include=PACKAGES, dependencies resolved
# by debootstrap) into DEST, unless DEST already holds a root built from the same inputs: the
# inputs are written to DEST.key, and a DEST whose key differs (or is missing) is built again.
# Downloaded .debs are kept in target/debootstrap-debs (--cache-dir), so a second root with a
# few more packages downloads only those. packaging/test.sh (the clean root for the .deb) and
# tests/vm/image.sh (the systemd-booted VM image) use it. Prints DEST on the last line.
set -eu

[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 DEST [PACKAGE,...]" >&2; exit 2; }
dest=$1
include=${2:-}
repo=$(cd "$(dirname "$0")/.." && pwd)
suite=bookworm
mirror=http://deb.debian.org/debian
key="debootstrap --variant=minbase $suite $mirror include=$include"

if [ -x "$dest/bin/sh" ] && [ "$(cat "$dest.key" 2>/dev/null)" = "$key" ]; then
    echo "$dest"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "$0: debootstrap is not installed" >&2; exit 1; }
debs="$repo/target/debootstrap-debs"
mkdir -p "$debs" "$(dirname "$dest")"
echo "debootstrap --variant=minbase $suite${include:+ --include=$include} -> $dest (kept for later runs)" >&2
rm -rf "$dest.tmp" "$dest" "$dest.key"
log="$dest.log"
if ! debootstrap --variant=minbase ${include:+--include="$include"} --cache-dir="$debs" \
    "$suite" "$dest.tmp" "$mirror" > "$log" 2>&1; then
    tail -5 "$log" >&2
    echo "$0: debootstrap failed (whole log: $log)" >&2
    exit 1
fi
mv "$dest.tmp" "$dest"
echo "$key" > "$dest.key"
echo "$dest"
