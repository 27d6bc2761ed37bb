#!/bin/sh
# build-deb.sh — build the codespace-agent .deb into OUT_DIR (default target/debian).
#
#   packaging/build-deb.sh [--out DIR] [--no-build] [--dpkg-deb]
#
# With cargo-deb installed (`cargo install cargo-deb`) this is `cargo deb -p codespace-agent`.
# Without it (or with --dpkg-deb), the same package is assembled with dpkg-deb from the same
# [package.metadata.deb] in agent/Cargo.toml: same assets and modes, same maintainer scripts, /etc
# files as conffiles, a generated copyright file as cargo-deb writes one, and Depends from the
# binaries' highest glibc symbol version plus the metadata's fixed dependencies. Prints the path
# of the .deb on the last line.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
out="$repo/target/debian"
build=1
tool=auto
while [ $# -gt 0 ]; do
    case "$1" in
    --out) out=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --dpkg-deb) tool=dpkg-deb; shift ;;
    *) echo "usage: $0 [--out DIR] [--no-build] [--dpkg-deb]" >&2; exit 2 ;;
    esac
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$repo"
# The shipped binaries are static-pie builds in target/TRIPLE/release (packaging/build.sh says why).
if [ "$build" = 1 ]; then
    bin_dir=$("$here/build.sh" | tail -1)
else
    bin_dir="$repo/target/$(rustc -vV | sed -n 's/^host: //p')/release"
fi
triple=$(basename "$(dirname "$bin_dir")")

# --no-strip: the release profile already drops debuginfo; byte-identical binaries make the .deb and
# install.sh installs identical (packaging/test.sh compares them).
if [ "$tool" = auto ] && cargo deb --version >/dev/null 2>&1; then
    cargo deb -q -p codespace-agent --no-build --no-strip --target "$triple" --output "$out" | tail -1
    exit 0
fi

# ---- fallback: dpkg-deb from the same metadata
. "$here/assets.sh"
toml="$repo/agent/Cargo.toml"
meta() { # KEY: a one-line string value from [package.metadata.deb]
    sed -n '/^\[package\.metadata\.deb\]/,/^\[/s/^'"$1"' = "\(.*\)"$/\1/p' "$toml" | head -1
}
name=$(meta name)
version=$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version = "\(.*\)"$/\1/p' Cargo.toml)
description=$(sed -n '/^\[package\]/,/^\[/s/^description = "\(.*\)"$/\1/p' "$toml")
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
chmod 0755 "$stage"
trap 'rm -rf "$stage"' EXIT
codespace_assets "$toml" | while read -r src dest mode; do
    case "$src" in
    target/release/*) f="$bin_dir/${src#target/release/}" ;; # as cargo-deb --target maps them
    *) f="agent/$src" ;;
    esac
    install -D -m "$mode" "$f" "$stage/$dest"
done
install -d -m 0755 "$stage/usr/share/doc/$name"
printf 'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: %s\nSource: %s\nCopyright: %s\nLicense: %s\n' \
    "$name" "$(sed -n 's/^repository = "\(.*\)"$/\1/p' Cargo.toml)" "$(meta copyright)" \
    "$(sed -n 's/^license = "\(.*\)"$/\1/p' Cargo.toml)" > "$stage/usr/share/doc/$name/copyright"
chmod 0644 "$stage/usr/share/doc/$name/copyright"
# Depends: $auto -> libc6 (>= highest GLIBC_x.y the binaries need); static binaries need none, and
# then $auto contributes nothing, as with cargo-deb (dpkg-shlibdeps finds no shared library).
glibc=$(objdump -T "$stage"/usr/bin/* 2>/dev/null | sed -n 's/.*GLIBC_\([0-9][0-9.]*\).*/\1/p' | sort -uV | tail -1)
if [ -n "$glibc" ]; then
    depends=$(meta depends | sed "s/\\\$auto/libc6 (>= $glibc)/")
else
    depends=$(meta depends | sed 's/\$auto, *//; s/, *\$auto//; s/^\$auto$//')
fi
mkdir -p "$stage/DEBIAN"
for s in postinst prerm postrm; do install -m 0755 "packaging/debian/$s" "$stage/DEBIAN/$s"; done
(cd "$stage" && find etc -type f | sed 's|^|/|' | sort) > "$stage/DEBIAN/conffiles"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | sort | xargs md5sum) > "$stage/DEBIAN/md5sums"
cat > "$stage/DEBIAN/control" <<CONTROL
Package: $name
Version: $version-1
Architecture: $arch
Section: $(meta section)
Priority: $(meta priority)
Maintainer: $(meta maintainer)
Installed-Size: $(du -sk --exclude=DEBIAN "$stage" | cut -f1)
Depends: $depends
Description: $description
CONTROL
deb="$out/${name}_${version}-1_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
