#!/usr/bin/env bash
# packaging/test.sh — checks the packaging end to end (needs root: dpkg --root, chroot).
#
#  1. `systemd-analyze verify` is clean on both units, in a temporary root that holds the units,
#     the built binary at their ExecStart= path and the host's systemd units (targets they order
#     against); a deliberately broken copy must be reported, so the check can fail. The network
#     side's unit scores at most 2.5 in `systemd-analyze security` (the privileged side's score is
#     printed: lifecycle commands inherit that unit, see packaging/README.md).
#  2. The .deb builds (packaging/build-deb.sh: cargo-deb when installed, else dpkg-deb from the
#     same metadata); with cargo-deb installed, the dpkg-deb fallback must build the same payload.
#  3. The .deb installs into a clean Debian root (debootstrap --variant=minbase, cached under
#     target/pkgtest/minbase by tests/debootstrap-root.sh; set PKGTEST_ROOT to use another clean
#     root): the unit is enabled,
#     the git credential block is in /etc/gitconfig, the agent is NOT started even though the root
#     has /run/systemd/system (a chroot must never start it), a login shell loads the env file.
#  4. `packaging/install.sh --root` into an empty directory produces the same paths, types and
#     modes as the .deb's payload plus what postinst adds (enable symlink, /etc/gitconfig).
#     Differences by design: dpkg's own state (/var/lib/dpkg, deb-systemd-helper state) and
#     cargo-deb's generated /usr/share/doc/codespace-agent/copyright.
#  5. Reinstall/upgrade is idempotent (one gitconfig block); purge removes the block and the
#     enable symlink.
# Exit 0 when all pass.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

if [ "$(id -u)" != 0 ]; then
    if [ "${CODESPACE_SKIP_ROOT_TESTS:-0}" = 1 ]; then
        echo "packaging/test.sh: skipped (not root, CODESPACE_SKIP_ROOT_TESTS=1)"
        exit 0
    fi
    echo "packaging/test.sh: needs root (run .ci/run as root, or set CODESPACE_SKIP_ROOT_TESTS=1 to skip)" >&2
    exit 1
fi

T=$(mktemp -d)
cleanup() { rm -rf "$T"; }
trap cleanup EXIT
PASS=0; FAIL=0
ok() { PASS=$((PASS + 1)); echo "PASS $*"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL $*"; }
UNIT=codespace-agent.service
PRIVILEGED_UNIT=codespace-agent-privileged.service
WANTS=etc/systemd/system/multi-user.target.wants/$UNIT

BIN_DIR=$(packaging/build.sh | tail -1)   # the static builds the package ships

# ---- 1. systemd-analyze verify
verify_root() { # UNIT_FILE -> a temp root with both units (UNIT_FILE as the network unit)
    local r="$T/verify-root"
    rm -rf "$r"; mkdir -p "$r/usr/bin" "$r/usr/lib/systemd"
    cp -a /usr/lib/systemd/system "$r/usr/lib/systemd/"
    cp "$BIN_DIR/codespace-agent" "$r/usr/bin/codespace-agent"
    cp "$1" "$r/usr/lib/systemd/system/$UNIT"
    cp "packaging/systemd/$PRIVILEGED_UNIT" "$r/usr/lib/systemd/system/$PRIVILEGED_UNIT"
    echo "$r"
}
verify() { # UNIT_FILE -> output of verify (empty output and rc 0 = clean)
    local r; r=$(verify_root "$1")
    systemd-analyze verify --root="$r" "$UNIT" "$PRIVILEGED_UNIT" 2>&1 || echo "(exit status $?)"
}
out=$(verify packaging/systemd/$UNIT)
if [ -z "$out" ]; then ok "systemd-analyze verify is clean (both units)"; else bad "systemd-analyze verify: $out"; fi
sed 's/^Restart=always/Restart=allways\nBogusDirective=1/' packaging/systemd/$UNIT > "$T/broken.service"
out=$(verify "$T/broken.service")
if [ -n "$out" ]; then ok "systemd-analyze verify reports a broken unit"; else bad "a broken unit passed verify"; fi
score() { # UNIT -> the exposure number systemd-analyze security gives it
    systemd-analyze security --offline=yes --root="$(verify_root packaging/systemd/$UNIT)" "$1" 2>/dev/null \
        | sed -n 's/^→ Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p'
}
net=$(score "$UNIT"); priv=$(score "$PRIVILEGED_UNIT")
if [ -n "$net" ] && awk -v s="$net" 'BEGIN { exit !(s <= 2.5) }'; then
    ok "systemd-analyze security: $UNIT (network side) $net <= 2.5; $PRIVILEGED_UNIT $priv"
else
    bad "systemd-analyze security: $UNIT scores '${net:-?}' (target <= 2.5)"
fi

# ---- 2. build the .deb
deb=$(packaging/build-deb.sh --no-build --out "$T/deb" | tail -1)
if [ -f "$deb" ]; then ok "deb built: $(basename "$deb") ($(cargo deb --version 2>/dev/null || echo dpkg-deb fallback))"; else bad "no .deb"; exit 1; fi

# the dpkg-deb fallback must build the same package (paths, modes, conffiles, scripts)
if cargo deb --version >/dev/null 2>&1; then
    fb=$(packaging/build-deb.sh --no-build --dpkg-deb --out "$T/fallback" | tail -1)
    listing() { dpkg-deb -c "$1" | awk '$6 != "./" {print $1, $6}' | sort -k2; dpkg-deb -I "$1" conffiles | sort; \
        for s in postinst prerm postrm; do dpkg-deb -I "$1" "$s" | md5sum; done; }
    if diff <(listing "$deb") <(listing "$fb") > "$T/fb.diff"; then
        ok "dpkg-deb fallback builds the same package as cargo-deb"
    else
        bad "dpkg-deb fallback differs from cargo-deb:"; cat "$T/fb.diff"
    fi
fi

# ---- 3. install into a clean root
base=${PKGTEST_ROOT:-$REPO/target/pkgtest/minbase}
if [ -z "${PKGTEST_ROOT:-}" ]; then
    tests/debootstrap-root.sh "$base" > /dev/null || { bad "debootstrap failed"; exit 1; }
fi
R="$T/root"
cp -a "$base" "$R"
# Look like a chroot on a systemd host: the postinst must still not start anything. A shim
# records any attempt (it comes first in the chroot's PATH).
mkdir -p "$R/run/systemd/system" "$R/usr/local/sbin"
for shim in deb-systemd-invoke systemctl; do
    printf '#!/bin/sh\necho "%s $*" >> /started.log\n' "$shim" > "$R/usr/local/sbin/$shim"
    chmod 0755 "$R/usr/local/sbin/$shim"
done
find "$R" -xdev \( -type f -o -type l \) -printf '%P\n' | sort > "$T/before.list"
cp "$deb" "$R/tmp/pkg.deb"
if chroot "$R" dpkg -i /tmp/pkg.deb > "$T/dpkg.log" 2>&1; then ok "dpkg -i into a clean minbase root"; else bad "dpkg -i: $(cat "$T/dpkg.log")"; fi
rm -f "$R/tmp/pkg.deb"
[ -L "$R/$WANTS" ] && [ -f "$R/$(readlink "$R/$WANTS")" ] \
    && ok "unit enabled by postinst (-> $(readlink "$R/$WANTS"))" || bad "unit not enabled in the .deb root"
# (deb-systemd-helper itself may ask for a daemon-reload when it sees /run/systemd/system; that
# starts nothing)
if grep -qE '(start|restart)( |$)' "$R/started.log" 2>/dev/null; then
    bad "postinst tried to start the agent in a chroot: $(cat "$R/started.log")"
else
    ok "postinst did not start the agent in a chroot"
fi
# the shipped binaries are static: they run in the clean root, and need no shared library at all
for b in codespace-agent codespace-agentctl; do
    if v=$(chroot "$R" /usr/bin/$b --version 2>&1) && ! readelf -l "$R/usr/bin/$b" | grep -q INTERP; then
        ok "static /usr/bin/$b runs in the clean root ($v)"
    else
        bad "/usr/bin/$b does not run in the clean root or is dynamically linked: $v"
    fi
done
# Docker finds the registry helper on PATH; it runs the agent binary (no agent here: `list` is {})
if v=$(chroot "$R" /usr/bin/docker-credential-codespace version 2>&1) && [ "$(chroot "$R" /usr/bin/docker-credential-codespace list 2>/dev/null)" = '{}' ]; then
    ok "docker-credential-codespace runs the agent's helper ($v)"
else
    bad "docker-credential-codespace does not run: $v"
fi
grep -q '^codespace-restricted:x:[0-9]*:[0-9]*:[^:]*:/var/lib/codespace-agent/restricted/home:/bin/sh$' "$R/etc/passwd" \
    && ok "postinst created the restricted principal (codespace-restricted)" || bad "no codespace-restricted in passwd"
grep -q '^codespace-agent:x:[1-9][0-9]*:[0-9]*:[^:]*:/nonexistent:/usr/sbin/nologin$' "$R/etc/passwd" \
    && ok "postinst created the network side's user (codespace-agent)" || bad "no codespace-agent in passwd"
grep -qxF $'\thelper = !/usr/bin/codespace-agent git-credential' "$R/etc/gitconfig" \
    && grep -qxF $'\tuseHttpPath = true' "$R/etc/gitconfig" \
    && ok "git credential helper with useHttpPath in /etc/gitconfig" || bad "gitconfig block missing"
grep -qxF $'\tpath = /run/codespace-agent-git/signing.gitconfig' "$R/etc/gitconfig" \
    && ok "the agent's signing configuration is included from /etc/gitconfig" || bad "signing include missing"
# the signing wrapper runs the agent's helper (which says where it looked for the broker)
rc=0; out=$(chroot "$R" /usr/bin/codespace-git-sign --enabled 2>&1) || rc=$?
[ "$rc" = 1 ] && echo "$out" | grep -q 'git-sign: signing broker at /run/codespace-agent/git-sign.sock' \
    && ok "codespace-git-sign runs codespace-agent git-sign" || bad "codespace-git-sign: rc $rc: $out"
# profile.d: a login shell exports what the env file assigns; without the file it stays quiet
mkdir -p "$R/run/codespace-agent/env"
printf "%s\nVMTEST_SECRET='a b \$(c)'\n" '# test' > "$R/run/codespace-agent/env/environment"
got=$(chroot "$R" /bin/sh -lc 'sh -c "printf %s \"\$VMTEST_SECRET\""')
[ "$got" = 'a b $(c)' ] && ok "login shell exports the env file (profile.d)" || bad "profile.d: got '$got'"
rm -rf "$R/run/codespace-agent"
err=$(chroot "$R" /bin/sh -lc 'true' 2>&1)
[ -z "$err" ] && ok "profile.d is silent without an env file" || bad "profile.d without env file: $err"

# ---- 4. install.sh --root produces the same file set
I="$T/image"; mkdir "$I"
packaging/install.sh --root "$I" > /dev/null
find "$R" -xdev \( -type f -o -type l \) -printf '%P\n' | sort > "$T/after.list"
comm -13 "$T/before.list" "$T/after.list" \
    | grep -v -e '^started.log$' -e '^var/lib/dpkg/' -e '^etc/\(passwd\|group\|shadow\|gshadow\|subuid\|subgid\)-\?$' -e '^var/lib/systemd/deb-systemd-helper' -e '^var/cache/' -e '^var/log/' \
        -e '^usr/share/doc/codespace-agent/copyright$' > "$T/deb.paths" || true
(cd "$I" && find . \( -type f -o -type l \) -printf '%P\n' | sort) > "$T/install.paths"
describe() { # ROOT PATHS_FILE -> "path type mode"
    while read -r p; do
        if [ -L "$1/$p" ]; then echo "$p link"; else echo "$p file $(stat -c %a "$1/$p")"; fi
    done < "$2"
}
describe "$R" "$T/deb.paths" > "$T/deb.desc"
describe "$I" "$T/install.paths" > "$T/install.desc"
if diff -u "$T/deb.desc" "$T/install.desc" > "$T/diff"; then
    ok "install.sh --root == .deb + postinst: $(wc -l < "$T/deb.desc") paths, same types and modes"
else
    bad "install.sh --root differs from the .deb:"; cat "$T/diff"
fi
cmp -s "$R/etc/gitconfig" "$I/etc/gitconfig" && ok "same /etc/gitconfig" || bad "/etc/gitconfig differs"
[ -L "$I/$WANTS" ] && [ -f "$I/$(readlink "$I/$WANTS")" ] && ok "unit enabled by install.sh" || bad "install.sh did not enable the unit"
for f in usr/bin/codespace-agent usr/lib/systemd/system/$UNIT usr/lib/systemd/system/$PRIVILEGED_UNIT etc/codespace-agent/config.jsonc; do
    cmp -s "$R/$f" "$I/$f" || bad "$f differs between the .deb and install.sh"
done

# ---- 5. idempotence and purge
packaging/install.sh --root "$I" > /dev/null
[ "$(grep -c 'codespace-agent: begin' "$I/etc/gitconfig")" = 1 ] && ok "install.sh twice: one gitconfig block" || bad "install.sh not idempotent"
cp "$deb" "$R/tmp/pkg.deb"
chroot "$R" dpkg -i /tmp/pkg.deb > "$T/dpkg2.log" 2>&1 || bad "reinstall failed: $(cat "$T/dpkg2.log")"
[ "$(grep -c 'codespace-agent: begin' "$R/etc/gitconfig")" = 1 ] && ok "reinstall: one gitconfig block" || bad "reinstall duplicated the gitconfig block"
if chroot "$R" dpkg --purge codespace-agent > "$T/purge.log" 2>&1; then ok "dpkg --purge"; else bad "purge: $(cat "$T/purge.log")"; fi
[ ! -e "$R/$WANTS" ] && [ ! -L "$R/$WANTS" ] && ok "purge removed the enable symlink" || bad "enable symlink left after purge"
if [ -f "$R/etc/gitconfig" ] && grep -q codespace-agent "$R/etc/gitconfig"; then bad "gitconfig block left after purge"; else ok "purge removed the gitconfig block"; fi

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
