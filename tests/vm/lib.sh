# tests/vm/lib.sh — what both kinds of VM test guest share; sourced by tests/vm/run.sh (busybox
# initramfs guest) and tests/vm/systemd.sh (a debootstrap image booted by systemd).
#
#   vm_kernel      the Debian cloud kernel (cached): sets vmlinuz, kver, kmoddir
#   vm_module      copies one of its modules (decompressed) into a guest tree
#   vm_vdv         vhost-device-vsock, built without its AF_VSOCK backend (cached): sets VDV
#   vm_build       the shipped static agent + codespace-agentctl + vmtest-guest: sets BIN_DIR,
#                  AGENT, CTL, GUEST (and checks the guest checker's guard on this machine)
#   vm_agent_config  the package's config.jsonc plus what a test guest needs (key_file, user, ...)
#   vm_workdir     a fresh work directory under $CACHE/runs: sets W
#   vm_boot        vhost-device-vsock + QEMU (TCG, real virtio-vsock), then waits for the agent's
#                  first answer over hybrid vsock: sets VPID, QPID, BOOT_MS
#   vm_deliver     token, sealed secrets and session, as a host supervisor delivers them
#   ctl ask hmp sha json   host-side helpers (codespace-agentctl, checker, QEMU monitor, ...)
#
# Safety: nothing here opens AF_VSOCK on this machine: vhost-device-vsock runs in uds mode only
# (refused if its --help mentions forward-cid) and every host-side connection is a Unix socket.
# shellcheck shell=bash

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${VMTEST_CACHE:-$REPO/target/vmtest}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-120}
QEMU_TIMEOUT=${QEMU_TIMEOUT:-600}
VDV_VERSION=0.3.0
GUEST_CID=3
MARKER=codespace.vmtest=1

T_START=$(date +%s%N)
elapsed() { echo $(( ($(date +%s%N) - T_START) / 1000000 ))ms; }
log() { echo "[vm $(date +%T)] $*" >&2; }
die() { log "FAIL: $*"; exit 1; }

vm_tools() { # TOOL...: each must be on PATH
    local tool
    for tool in qemu-system-x86_64 python3 readelf "$@"; do
        command -v "$tool" >/dev/null || die "$tool not found (install qemu-system-x86 python3 binutils cpio e2fsprogs debootstrap; .ci/run does)"
    done
    [ -x /bin/busybox ] && ! readelf -l /bin/busybox | grep -q INTERP \
        || die "/bin/busybox must be the static busybox (apt-get install busybox-static)"
    mkdir -p "$CACHE"/{kernel,tools,third_party,runs}
}

# ------------------------------------------------------------------ guest kernel (Debian cloud)
# Kept of its modules (the rest, ~90 MB, is deleted): virtio (the PCI transport is a module),
# virtio_blk (the systemd guest's root disk; ext4 is built in), vsock, and sock_diag for TCP/UDP
# (the agent's port watcher; udev or the kernel loads them in the systemd guest).
VM_KERNEL_KEEP="drivers/virtio drivers/block/virtio_blk.ko net/vmw_vsock net/ipv4/inet_diag.ko net/ipv4/tcp_diag.ko net/ipv4/udp_diag.ko"
vm_kernel() {
    if [ -n "${VM_KERNEL:-}" ]; then
        vmlinuz=$VM_KERNEL; kver=""; kmoddir=""
        return
    fi
    local kpkg kv km k p cached=1
    vmlinuz=$(ls "$CACHE"/kernel/root/boot/vmlinuz-*-cloud-amd64 2>/dev/null | head -1 || true)
    kv=${vmlinuz##*/vmlinuz-}
    # A cache from before the list grew is fetched again.
    for p in $VM_KERNEL_KEEP; do
        [ -n "$vmlinuz" ] && [ -e "$CACHE/kernel/root/lib/modules/$kv/kernel/$p" ] || cached=0
    done
    if [ "$cached" = 0 ]; then
        apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1 || apt-get update -qq
        kpkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/{print $2}')
        [ -n "$kpkg" ] || die "cannot resolve linux-image-cloud-amd64"
        log "downloading $kpkg"
        rm -rf "$CACHE/kernel/root"
        (cd "$CACHE/kernel" && apt-get download -qq "$kpkg" 2>/dev/null \
            && dpkg-deb -x "${kpkg}"_*.deb root && rm -f "${kpkg}"_*.deb)
        vmlinuz=$(ls "$CACHE"/kernel/root/boot/vmlinuz-*-cloud-amd64 | head -1)
        kv=${vmlinuz##*/vmlinuz-}; km="$CACHE/kernel/root/lib/modules/$kv"
        k="$CACHE/kernel/keep"
        rm -rf "$k"
        for p in $VM_KERNEL_KEEP; do
            mkdir -p "$k/kernel/$(dirname "$p")"
            mv "$km/kernel/$p" "$k/kernel/$p"
        done
        rm -rf "$km/kernel"; mv "$k/kernel" "$km/"
        rmdir "$k"; rm -rf "$CACHE/kernel/root/usr"
    fi
    kver=$kv
    kmoddir="$CACHE/kernel/root/lib/modules/$kver/kernel"
}

vm_module() { # NAME DEST_FILE: the module NAME (decompressed) as DEST_FILE; 1 if it is built in
    local f
    f=$(find "$kmoddir" -name "$1.ko" -o -name "$1.ko.xz" -o -name "$1.ko.zst" | head -1)
    [ -n "$f" ] || return 1
    mkdir -p "$(dirname "$2")"
    case "$f" in
    *.xz) xz -dc "$f" > "$2" ;;
    *.zst) zstd -qdc "$f" > "$2" ;;
    *) cp "$f" "$2" ;;
    esac
}

# ------------------------------------------------------------------ vhost-device-vsock (uds only)
vm_vdv() {
    VDV="$CACHE/tools/bin/vhost-device-vsock"
    if [ ! -x "$VDV" ]; then
        log "building vhost-device-vsock $VDV_VERSION from its crates.io tarball (--no-default-features)"
        local fetch crate src
        fetch="$CACHE/third_party/fetch-vdv"
        mkdir -p "$fetch"
        cat > "$fetch/Cargo.toml" <<EOF
[package]
name = "fetch-vdv"
version = "0.0.0"
edition = "2021"
publish = false
[lib]
path = "lib.rs"
[dependencies]
vhost-device-vsock = { version = "=$VDV_VERSION", default-features = false }
[workspace]
EOF
        : > "$fetch/lib.rs"
        (cd "$fetch" && cargo fetch -q)
        crate=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/vhost-device-vsock-$VDV_VERSION.crate | head -1)
        src="$CACHE/third_party/vhost-device-vsock-$VDV_VERSION"
        rm -rf "$src"; tar -xzf "$crate" -C "$CACHE/third_party"
        # 0.3.0 does not compile without backend_vsock: `path` is already a PathBuf there.
        sed -i 's/BackendType::UnixDomainSocket(path.trim().to_string())/BackendType::UnixDomainSocket(path)/' "$src/src/main.rs"
        # The cache lives under this repository's target/: keep the crate out of our workspace.
        printf '\n[workspace]\n' >> "$src/Cargo.toml"
        cargo install -q --locked --no-default-features --path "$src" --root "$CACHE/tools" \
            --target-dir "$CACHE/third_party/vdv-target"
        rm -rf "$CACHE/third_party/vdv-target"
    fi
    case "$("$VDV" --help 2>&1 || true)" in
    *forward-cid*) die "vhost-device-vsock was built with backend_vsock (AF_VSOCK forwarding); refusing" ;;
    esac
}

# ------------------------------------------------------------------ builds
vm_build() {
    log "building the shipped static agent and codespace-agentctl (packaging/build.sh) + vmtest-guest"
    BIN_DIR=$("$REPO/packaging/build.sh" --example vmtest-guest | tail -1)
    AGENT="$BIN_DIR/codespace-agent"
    GUEST="$BIN_DIR/examples/vmtest-guest"
    CTL="$BIN_DIR/codespace-agentctl"
    local b grc=0
    for b in "$AGENT" "$GUEST"; do
        # static glibc: no program interpreter, so it runs in an initramfs without a libc
        readelf -l "$b" | grep -q INTERP && die "$b is dynamically linked"
    done
    "$AGENT" --version >/dev/null || die "the static agent does not run"
    # The guard must hold on this machine (no marker on our /proc/cmdline): exit 2, no socket opened.
    "$GUEST" 2>/dev/null || grc=$?
    [ "$grc" = 2 ] || die "vmtest-guest did not refuse to run outside the VM (exit $grc)"
}

vm_workdir() {
    # Failed runs keep their work directory for inspection; keep only the 5 newest of those.
    { ls -1dt "$CACHE"/runs/*/ 2>/dev/null || true; } | tail -n +6 | xargs -r rm -rf
    W=$(mktemp -d "$CACHE/runs/XXXXXX")
}

# The package's default config, plus the shared key (the HMAC handshake over vsock), a 2 s
# heartbeat (checks watch idle connections), the remote user an image builder would set (resolved
# from /etc/passwd by the static binary), the codespace's identity (a supervisor sets it) and,
# when given, a "sandbox" section (JSON object members).
vm_agent_config() { # SANDBOX_MEMBERS > config.jsonc
    local sandbox="" cfg
    [ -z "$1" ] || sandbox="\n  \"sandbox\": { $1 },"
    cfg=$(sed -e 's|^{$|{\n  "key_file": "/etc/codespace-agent/host.key",'"$sandbox"'|' \
        -e 's|"heartbeat_interval_s": 30,|"heartbeat_interval_s": 2,|' \
        -e 's|"user": null,|"user": "codespace",|' \
        -e 's|^  "listen": |  "codespace": { "owner": "octocat", "organization": "octo" },\n  "listen": |' \
        "$REPO/packaging/etc/codespace-agent/config.jsonc")
    case "$cfg" in
    *'"key_file"'*'"heartbeat_interval_s": 2,'*) ;;
    *) die "could not adapt the package's config (key_file, heartbeat_interval_s)" ;;
    esac
    case "$cfg" in
    *'"codespace": { "owner": "octocat"'*'"user": "codespace",'*) ;;
    *) die "could not adapt the package's config (user, codespace)" ;;
    esac
    printf '%s\n' "$cfg"
}

# ------------------------------------------------------------------ boot
VPID=; QPID=; BGPID=
VM_PIDS=() # more PIDs (background host-side jobs) for the cleanup trap, by name of a variable
vm_cleanup() {
    local rc=$? p v pids=()
    for v in "${VM_PIDS[@]}" BGPID QPID VPID; do [ -n "${!v:-}" ] && pids+=("${!v}"); done
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -f "$W"/vhost.sock "$W"/vm.vsock "$W"/vm.vsock_* "$W"/mon.sock
    if [ "$rc" != 0 ]; then
        log "--- qemu.log"; cat "$W/qemu.log" >&2 2>/dev/null || true
        log "--- console.log (tail)"; tail -"${CONSOLE_TAIL:-40}" "$W/console.log" >&2 2>/dev/null || true
        log "--- vhost-device-vsock log (tail)"; tail -5 "$W/vdv.log" >&2 2>/dev/null || true
        log "work directory kept: $W"
    elif [ "${KEEP:-0}" != 1 ]; then
        rm -rf "$W"
    fi
    exit "$rc"
}

# Background jobs run the command itself, not through `ctl`: `ctl ... &` would fork a subshell,
# and the cleanup trap would kill that subshell by PID while its codespace-agentctl lived on.
ctl() { "${CTL_CMD[@]}" "$@"; }
ask() { python3 "$REPO/tests/vm/host.py" ask "$W/vm.vsock" 5000 "$@"; }
hmp() { python3 "$REPO/tests/vm/host.py" hmp "$W/mon.sock" "$1"; }
sha() { python3 "$REPO/tests/vm/host.py" sha256 "$1"; }
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

vm_boot() { # MEMORY QEMU_ARGS...: the VM with real virtio-vsock; returns once the agent answered
    local mem=$1 brc=0; shift
    trap vm_cleanup EXIT
    trap 'exit 130' INT TERM
    # uds-path mode only: vhost-device-vsock never opens AF_VSOCK here.
    "$VDV" --vm "guest-cid=$GUEST_CID,socket=$W/vhost.sock,uds-path=$W/vm.vsock" > "$W/vdv.log" 2>&1 &
    VPID=$!
    for _ in $(seq 200); do [ -S "$W/vhost.sock" ] && break; sleep 0.05; done
    [ -S "$W/vhost.sock" ] || die "vhost-device-vsock did not come up: $(cat "$W/vdv.log")"

    log "booting the VM (TCG, kernel $(basename "$vmlinuz"))"
    T_BOOT=$(date +%s%N)
    TMPDIR=$W timeout "$QEMU_TIMEOUT" qemu-system-x86_64 \
        -machine q35,accel=tcg -cpu max -smp 2 -m "$mem" \
        -object memory-backend-memfd,id=mem,size="$mem",share=on -numa node,memdev=mem \
        -chardev socket,id=vsk,path="$W/vhost.sock" -device vhost-user-vsock-pci,chardev=vsk \
        -kernel "$vmlinuz" "$@" \
        -monitor unix:"$W/mon.sock",server=on,wait=off \
        -nodefaults -display none -serial file:"$W/console.log" -no-reboot \
        < /dev/null > "$W/qemu.log" 2>&1 &
    QPID=$!
    CTL_CMD=("$CTL" --connect "hybrid:$W/vm.vsock:1023" --key-file "$W/key")

    # Wait for the agent's first answer, but give up at once if QEMU is gone (bad kernel, panic).
    "${CTL_CMD[@]}" --connect-timeout "$BOOT_TIMEOUT" status > "$W/status0.json" 2> "$W/status0.err" &
    BGPID=$!
    while kill -0 "$BGPID" 2>/dev/null; do
        if ! kill -0 "$QPID" 2>/dev/null; then
            die "the guest did not come up: QEMU exited before the agent answered ($(tr '\n' ' ' < "$W/qemu.log"))"
        fi
        sleep 0.2
    done
    wait "$BGPID" || brc=$?; BGPID=
    [ "$brc" = 0 ] || die "the guest did not come up: no answer from the agent within ${BOOT_TIMEOUT}s ($(cat "$W/status0.err"))"
    BOOT_MS=$(( ($(date +%s%N) - T_BOOT) / 1000000 ))
    log "agent answered ${BOOT_MS} ms after QEMU started"
}

# `ports forward DEV_PORT` on 127.0.0.1:0 with a grant for LOGIN (organization octo), signed with
# $W/grant.key (made on first use). Not in a subshell: the PID must reach the cleanup trap.
start_forward() { # PID_VAR ADDR_VAR NAME LOGIN
    [ -s "$W/grant.key" ] || head -c 48 /dev/urandom > "$W/grant.key"
    "${CTL_CMD[@]}" ports forward "$DEV_PORT" \
        --listen 127.0.0.1:0 --as "$4" --orgs octo --grant-key-file "$W/grant.key" \
        > "$W/$3.out" 2> "$W/$3.err" &
    printf -v "$1" %s $!
    for _ in $(seq 300); do [ -s "$W/$3.out" ] && break; sleep 0.1; done
    local sf_addr; sf_addr=$(json "$W/$3.out" 'd["listening"]') || { cat "$W/$3.err"; return 1; }
    printf -v "$2" %s "$sf_addr"
}

vm_poweroff() { # asks the checker to power the VM off; 0 once QEMU is gone within 60 s
    ask POWEROFF > /dev/null || true
    for _ in $(seq 600); do kill -0 "$QPID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$QPID" 2>/dev/null && return 1
    wait "$QPID" 2>/dev/null || true; QPID=
}

# ------------------------------------------------------------------ the codespace's environment
TOKEN=ghs_vmtestToken0123456789
declare -A SECRETS=([NPM_TOKEN]=npm_vmtest_value [DB_PASSWORD]="it's \$(not) run")
vm_deliver() { # CHECK_FUNCTION: token (scope octo/app), sealed secrets, session, each as a check
    local check=$1
    printf '%s' "$TOKEN" > "$W/token"
    printf '%s' '{"repositories":{"octo/app":{"contents":"write","metadata":"read"}},"fork_on_push":false,"denied":[]}' > "$W/scope.json"
    python3 -c 'import json,sys; print(json.dumps(dict(zip(sys.argv[1::2], sys.argv[2::2]))))' \
        NPM_TOKEN "${SECRETS[NPM_TOKEN]}" DB_PASSWORD "${SECRETS[DB_PASSWORD]}" > "$W/secrets.json"
    "$check" "token put" ctl token put --token-file "$W/token" --scope-file "$W/scope.json" \
        --expires-at "$(date -u -d '+8 hours' +%Y-%m-%dT%H:%M:%SZ)"
    "$check" "secrets put (sealed on the host)" ctl secrets put --file "$W/secrets.json"
    "$check" "session create" ctl session create --owner octocat --repository octo/app
}
