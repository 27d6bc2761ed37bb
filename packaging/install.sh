#!/bin/sh
# install.sh — install codespace-agent into an image root without Debian packages.
#
#   packaging/install.sh --root /mnt/image [--bin-dir DIR]
#
# Installs exactly the .deb's file set (read from [package.metadata.deb] in agent/Cargo.toml),
# enables the unit the way `systemctl enable` would (the WantedBy= symlink under ROOT), and adds
# the git credential helper block to ROOT/etc/gitconfig, and creates the package's users
# (codespace-agent, codespace-restricted) in ROOT's passwd. It starts nothing and touches nothing outside ROOT. Idempotent: running it twice gives the same result.
set -eu

usage() {
    echo "usage: $0 --root DIR [--bin-dir DIR]" >&2
    echo "  --root DIR     the image's root file system (required; may be / on the image itself)" >&2
    echo "  --bin-dir DIR  where codespace-agent and codespace-agentctl were built" >&2
    echo "                 (default: target/TRIPLE/release, where packaging/build.sh puts the shipped static builds)" >&2
    exit 2
}

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
root=""
bin_dir="$repo/target/$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')/release"
while [ $# -gt 0 ]; do
    case "$1" in
    --root) [ $# -ge 2 ] || usage; root=$2; shift 2 ;;
    --bin-dir) [ $# -ge 2 ] || usage; bin_dir=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "install.sh: unknown argument: $1" >&2; usage ;;
    esac
done
[ -n "$root" ] || usage
[ -d "$root" ] || { echo "install.sh: --root $root is not a directory" >&2; exit 2; }
root=$(cd "$root" && pwd)
[ "$root" = / ] && root=""

. "$here/assets.sh"
. "$here/gitconfig.sh"
. "$here/users.sh"

assets=$(codespace_assets "$repo/agent/Cargo.toml")
# Check every source first, so a missing binary never leaves a half-installed image.
echo "$assets" | while read -r src dest mode; do
    case "$src" in
    target/release/*) f="$bin_dir/${src#target/release/}" ;;
    *) f="$repo/agent/$src" ;;
    esac
    [ -f "$f" ] || { echo "install.sh: $f is missing (build with: packaging/build.sh)" >&2; exit 1; }
done

echo "$assets" | while read -r src dest mode; do
    case "$src" in
    target/release/*) f="$bin_dir/${src#target/release/}" ;;
    *) f="$repo/agent/$src" ;;
    esac
    # config files under /etc are conffiles in the .deb: an admin's edit is kept here too
    if [ -e "$root/$dest" ] && [ "${dest#etc/}" != "$dest" ] && ! cmp -s "$f" "$root/$dest"; then
        echo "install.sh: keeping locally modified /$dest (new version: /$dest.dist)" >&2
        install -D -m "$mode" "$f" "$root/$dest.dist"
        continue
    fi
    install -D -m "$mode" "$f" "$root/$dest"
done

# Enable: one symlink per WantedBy= target, as `systemctl enable` creates it.
unit=usr/lib/systemd/system/codespace-agent.service
wanted=$(sed -n '/^\[Install\]/,/^\[/s/^WantedBy=//p' "$root/$unit")
for target in $wanted; do
    mkdir -p "$root/etc/systemd/system/$target.wants"
    ln -sfn "/$unit" "$root/etc/systemd/system/$target.wants/codespace-agent.service"
done

codespace_gitconfig_add "$root/etc/gitconfig"
codespace_users_add "$root" "$here/sysusers.d/codespace-agent.conf"
echo "installed codespace-agent into ${root:-/} (unit enabled for: $wanted)"
