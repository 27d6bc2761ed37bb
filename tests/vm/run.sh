#!/usr/bin/env bash
# tests/vm/run.sh — the VM end-to-end test: the real codespace-agent inside a nested QEMU VM,
# driven by codespace-agentctl on this machine over REAL virtio-vsock.
#
#   codespace-agentctl --connect hybrid:$W/vm.vsock:1023      (this machine: Unix sockets only)
#     -> vhost-device-vsock (uds mode, built without its AF_VSOCK backend)
#     -> QEMU vhost-user-vsock-pci -> guest kernel virtio-vsock -> codespace-agent (vsock:any:1023)
#
# The guest is a Debian cloud kernel + busybox initramfs. The agent is installed into the
# initramfs by packaging/install.sh (the same files as the .deb), its state directory is made
# from the package's tmpfiles.d line on a tmpfs /run, and it is started as a system without
# systemd starts it: `codespace-agent run --config ...` as root, with the unit's Environment=; it
# forks its network side (`csa-network`, the codespace-agent user) itself. A guest-side checker (tests/vm/guest/main.rs,
# built as the `vmtest-guest` example) answers the host's questions about the guest.
#
# Checks: handshake + status + ping; token and sealed secrets delivered and present (by SHA-256)
# in the guest's environment file, mode 0600, and in a login shell through /etc/profile.d;
# vsock_loopback absent and a guest process cannot reach the agent through CID 1 or the guest's
# own CID, and once the test loads vsock_loopback anyway, the agent refuses those peer CIDs itself;
# a second agent instance whose allowed_cids excludes the host refuses the host's real
# CID 2 connection (and logs why); suspend/resume with the QEMU monitor (stop/cont): nothing
# arrives while paused, a new connection after `cont` works (same boot id), and an events
# connection opened before the pause delivers heartbeats again; ports: a dev server on
# 127.0.0.1 in the guest shows up as a port_opened event and in `ports list` with its process, a
# `ports forward` with a signed grant reaches it through the agent over real vsock (bytes
# compared), a grant for a login that is not the owner is refused with its reason; lifecycle:
# the workspace's postCreateCommand runs in the agent's sandbox as the remote user (exit 0, the
# secret in its output redacted, the file it wrote owned by uid 1000), a failing postStartCommand's
# exit status reaches the host; clean power-off.
#
# Safety: nothing here opens AF_VSOCK on this machine. vhost-device-vsock is built
# --no-default-features (no backend_vsock; refused if its --help mentions forward-cid), and
# vmtest-guest refuses to run unless /proc/cmdline has codespace.vmtest=1 (checked below).
#
# `tests/vm/run.sh --systemd` runs the other kind of guest instead: a Debian image booted by
# systemd with the .deb installed (tests/vm/systemd.sh).
#
# Env knobs:
#   VMTEST_CACHE=target/vmtest  kernel, vhost-device-vsock, work dirs (kept between runs)
#   BOOT_TIMEOUT=120            seconds for the agent to answer after QEMU starts
#   QEMU_TIMEOUT=600            hard cap for the VM's life
#   VM_KERNEL=PATH              use this kernel image (a broken path tests the failure path)
#   VM_LONG=1                   also measure control-channel latency (PINGS, default 2000) and
#                               forward throughput (FWD_MIB, default 64, each of FWD_RUNS=3 runs,
#                               next to the raw-vsock echo of the same size)
#   KEEP=1                      keep the work directory (always kept on failure)
# Exit: 0 all checks passed; 1 a check failed or the guest did not come up.
set -euo pipefail

# The second kind of guest (issue 14): a debootstrap image booted by systemd, the .deb installed.
if [ "${1:-}" = --systemd ]; then
    shift
    exec "$(dirname "$0")/systemd.sh" "$@"
fi
[ $# = 0 ] || { echo "usage: $0 [--systemd]" >&2; exit 2; }

# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"
VM_LONG=${VM_LONG:-0}
PINGS=${PINGS:-2000}
FWD_MIB=${FWD_MIB:-64}
FWD_RUNS=${FWD_RUNS:-3}

vm_tools cpio gzip
vm_kernel
vm_vdv
vm_build

# ------------------------------------------------------------------ initramfs
vm_workdir
IR="$W/initramfs"
mkdir -p "$IR"/{bin,dev,proc,sys,run,tmp,etc,lib/modules,root,home/codespace,workspaces}
cp /bin/busybox "$IR/bin/busybox"
# packaging/install.sh needs both binaries; codespace-agentctl is not used in the guest.
mkdir -p "$W/bin"; cp "$AGENT" "$W/bin/codespace-agent"; cp "$CTL" "$W/bin/codespace-agentctl"
"$REPO/packaging/install.sh" --root "$IR" --bin-dir "$W/bin" >/dev/null
cp "$GUEST" "$IR/bin/vmtest-guest"
MODS="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport"
if [ -n "$kmoddir" ]; then
    for m in $MODS; do
        vm_module "$m" "$IR/lib/modules/$m.ko" || true # built into the kernel
    done
    # vsock_loopback goes in, but not where /init loads modules from: the checker loads it late,
    # to show that even with a loopback transport the agent refuses non-host peer CIDs.
    vm_module vsock_loopback "$IR/lib/modules/late/vsock_loopback.ko" \
        || die "vsock_loopback module not found in the guest kernel"
fi
head -c 32 /dev/urandom > "$W/key"
install -m 0600 "$W/key" "$IR/etc/codespace-agent/host.key"
# The package's config for a test guest; the 6.1 kernel's tmpfs (where the initramfs lives)
# cannot be idmapped and busybox has no nft: restricted runs degrade, without outbound.
vm_agent_config '"restricted_fallback": "degrade", "restricted_outbound": false' > "$IR/etc/codespace-agent/config.jsonc"
# A second instance that accepts only CID 1000: the host's connection (CID 2) must be refused.
cat > "$IR/etc/codespace-agent/reject.jsonc" <<'EOF'
{ "listen": "vsock:any:1022", "allowed_cids": [1000], "state_dir": "/run/codespace-agent-reject",
  "key_file": "/etc/codespace-agent/host.key" }
EOF
# The codespace's repository, with the lifecycle commands the host asks the agent to run.
mkdir -p "$IR/workspaces/app/.devcontainer"
cat > "$IR/workspaces/app/.devcontainer/devcontainer.json" <<'EOF'
{
  // tests/vm/run.sh: a secret in the output (must come back redacted), a file written as the
  // remote user, and a failing command whose exit status must reach the host.
  "image": "mcr.microsoft.com/devcontainers/base:debian",
  "postCreateCommand": "echo \"npm=$NPM_TOKEN\"; id -u > /workspaces/app/created-by && echo created",
  "postStartCommand": "echo starting; exit 7",
  // Run restricted (--creator-access read): what a hostile repository tries. Each line says
  // LEAK when the attack works.
  "postAttachCommand": "id -u; cat /run/codespace-agent/env/environment >/dev/null 2>&1 && echo LEAK-env || echo ok-env; (echo '[core] fsmonitor = x' >> .git/config) 2>/dev/null && echo LEAK-gitconfig || echo ok-gitconfig; (touch .git/hooks/post-checkout) 2>/dev/null && echo LEAK-hook || echo ok-hook; ls /tmp/creator-tmux >/dev/null 2>&1 && echo LEAK-tmp || echo ok-tmp; nc -w 2 127.0.0.1 8123 </dev/null >/dev/null 2>&1 && echo LEAK-loopback || echo ok-loopback; echo hostile-done"
}
EOF
mkdir -p "$IR/workspaces/app/.git/hooks"
printf '[core]\n\tbare = false\n' > "$IR/workspaces/app/.git/config"
# The restricted principal as the package's sysusers.d entry creates it.
printf 'root:x:0:0:root:/root:/bin/sh\ncodespace:x:1000:1000:codespace:/home/codespace:/bin/sh\ncodespace-restricted:x:998:998::/var/lib/codespace-agent/restricted/home:/bin/sh\ncodespace-agent:x:997:997::/nonexistent:/usr/sbin/nologin\n' > "$IR/etc/passwd"
printf 'root:x:0:\ncodespace:x:1000:\ncodespace-restricted:x:998:\ncodespace-agent:x:997:\n' > "$IR/etc/group"
# Like Debian's /etc/profile: login shells source /etc/profile.d/*.sh.
cat > "$IR/etc/profile" <<'EOF'
for f in /etc/profile.d/*.sh; do [ -r "$f" ] && . "$f"; done
unset f
EOF
cat > "$IR/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/bin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
# The remote user owns its home and the cloned repository, as in a real codespace, and has a
# tmux-like directory in /tmp that restricted runs must not see.
chown -R 1000:1000 /home/codespace /workspaces/app
mkdir -m 0700 /tmp/creator-tmux && echo secret > /tmp/creator-tmux/default && chown -R 1000:1000 /tmp/creator-tmux
# cgroup v2 where systemd mounts it: the lifecycle sandbox gives every run a cgroup.
mount -t cgroup2 cgroup2 /sys/fs/cgroup
# Loopback up, as on any booted system: the agent's forwarder dials the dev server on 127.0.0.1.
ip link set lo up
for m in $MODS; do
    [ -f /lib/modules/\$m.ko ] && { insmod /lib/modules/\$m.ko || echo "VMTEST: insmod \$m failed"; }
done
# systemd-tmpfiles, for the package's own line(s): d PATH MODE USER GROUP AGE
grep -v '^#' /usr/lib/tmpfiles.d/codespace-agent.conf | while read -r t p m u g a; do
    [ "\$t" = d ] && mkdir -p "\$p" && chmod "\$m" "\$p" && chown "\$u:\$g" "\$p"
done
# Start the agent as a system without systemd does (an init script, a container entrypoint): as
# root, with the units' Environment= and config; it forks its network side. (Under systemd the
# two units start the two sides: tests/vm/run.sh --systemd.)
unit=/usr/lib/systemd/system/codespace-agent-privileged.service
envs=\$(sed -n 's/^Environment=//p' \$unit)
cmd="/usr/bin/codespace-agent run --config /etc/codespace-agent/config.jsonc"
echo "VMTEST: starting: \$cmd"
env \$envs \$cmd > /run/agent.log 2>&1 &
/usr/bin/codespace-agent run --config /etc/codespace-agent/reject.jsonc > /run/agent-reject.log 2>&1 &
echo "VMTEST: agents started at uptime \$(cut -d' ' -f1 /proc/uptime)"
/bin/vmtest-guest
echo "VMTEST: checker exited rc=\$?"
echo "VMTEST: --- agent log"; cat /run/agent.log
poweroff -f
EOF
chmod 0755 "$IR/init"
(cd "$IR" && find . | cpio -o -H newc --quiet | gzip -1 > "$W/initramfs.cpio.gz")

# ------------------------------------------------------------------ boot
EVPID=; FWPID=; FW2PID=
VM_PIDS=(FWPID FW2PID EVPID)
vm_boot 512M -initrd "$W/initramfs.cpio.gz" -append "console=ttyS0 quiet panic=-1 $MARKER"

PASS=0; FAIL=0
check() { # NAME COMMAND...: runs COMMAND, records PASS/FAIL
    local name=$1; shift
    if "$@" > "$W/check.out" 2>&1; then
        PASS=$((PASS + 1)); echo "PASS $name"
    else
        FAIL=$((FAIL + 1)); echo "FAIL $name"; sed 's/^/    /' "$W/check.out"
    fi
}

# 1. handshake, status, ping
BOOT_ID=$(json "$W/status0.json" 'd["boot_id"]')
check "status over real vsock: handshake, agent id, boot id" \
    json "$W/status0.json" 'd["agent_id"] and d["boot_id"] and d["capabilities"] or sys.exit(1)'
check "ping" ctl ping

# 2. token and sealed secrets into the guest's environment
vm_deliver check
ENV_FILE=/run/codespace-agent/env/environment
env_has() { # the guest's env file has NAME with this value (compared by SHA-256)
    ask "ENV $ENV_FILE" > "$W/env.out" || return 1
    grep -qx "VAR $1 $(sha "$2")" "$W/env.out" || { echo "no VAR $1 with the expected value in:"; cut -d' ' -f1,2 "$W/env.out"; return 1; }
}
check "GITHUB_TOKEN in the guest's environment file" env_has GITHUB_TOKEN "$TOKEN"
for n in NPM_TOKEN DB_PASSWORD; do
    check "secret $n in the guest's environment file" env_has "$n" "${SECRETS[$n]}"
done
env_stat() { local got; got=$(ask "STAT $ENV_FILE"); echo "$got"; [ "$got" = "OK 600 1000 1000" ]; }
check "environment file is mode 0600, owned by the remote user (uid 1000)" env_stat
login_shell_has() { local got; got=$(ask "SHELL $1 $2"); echo "$got"; [ "$got" = "OK $(sha "$3")" ]; }
check "the remote user's login shell sees NPM_TOKEN through /etc/profile.d" \
    login_shell_has codespace NPM_TOKEN "${SECRETS[NPM_TOKEN]}"

# 3. guest processes cannot reach the agent; non-host CIDs are refused
no_loopback() { ask MODULES > "$W/mods"; grep -q '^OK ' "$W/mods" && ! grep -q vsock_loopback "$W/mods"; }
check "vsock_loopback is not loaded in the guest" no_loopback
refused() { ask "CONNECT_LOCAL $1 1023" > "$W/local"; cat "$W/local"; grep -q '^ERR ' "$W/local"; }
check "a guest process cannot connect to the agent via CID 1 (local)" refused 1
check "a guest process cannot connect to the agent via its own CID $GUEST_CID" refused "$GUEST_CID"
rejected() {
    local rc=0
    "$CTL" --connect "hybrid:$W/vm.vsock:1022" --key-file "$W/key" --connect-timeout 5 status || rc=$?
    [ "$rc" = 3 ] || { echo "expected exit 3 (not reachable), got $rc"; return 1; }
    [ "$(ask 'GREP /run/agent-reject.log vsock peer CID 2 is not in the allowed list')" = "OK found" ]
}
check "an agent whose allowed_cids excludes the host refuses CID 2 (and logs why)" rejected

# 4. suspend / resume with the QEMU monitor. The host side does not dial while the VM is paused:
# with vhost-device-vsock 0.3.0 a CONNECT that arrives during `stop` is never delivered after
# `cont`, and later connections hang behind it (see tests/vm/README.md).
"${CTL_CMD[@]}" events > "$W/events.out" 2> "$W/events.err" &
EVPID=$!
heartbeats() { grep -c '"heartbeat"' "$W/events.out" || true; }
suspend_resume() {
    local before
    hmp stop > /dev/null
    hmp "info status" | grep -q paused || { echo "VM not paused"; return 1; }
    before=$(heartbeats)
    sleep 3
    [ "$(heartbeats)" = "$before" ] || { echo "heartbeats arrived while the VM was paused?"; return 1; }
    hmp cont > /dev/null
    hmp "info status" | grep -q running || { echo "VM not running after cont"; return 1; }
    # A new connection (what a supervisor's Reconnecting client does after resume).
    ctl --connect-timeout 60 status > "$W/status1.json" || { echo "status after resume failed"; return 1; }
    [ "$(json "$W/status1.json" 'd["boot_id"]')" = "$BOOT_ID" ] || { echo "boot id changed"; return 1; }
}
check "stop/cont: no traffic while paused; a new connection after resume, same boot" suspend_resume
events_alive() {
    local n; n=$(heartbeats)
    for _ in $(seq 100); do [ "$(heartbeats)" -gt "$n" ] && return 0; sleep 0.1; done
    echo "no heartbeat on the events connection within 10 s after resume"; return 1
}
check "the events connection opened before the pause still delivers heartbeats" events_alive
check "session resume after the pause" ctl session resume
check "secrets still in the environment after resume" env_has NPM_TOKEN "${SECRETS[NPM_TOKEN]}"
kill "$EVPID" 2>/dev/null || true; wait "$EVPID" 2>/dev/null || true; EVPID=

# 5. defence in depth: even if vsock_loopback were loaded (the modprobe rule keeps it out), a
# guest process reaches the agent with peer CID 1 or the guest's own CID, and the agent refuses it.
with_loopback() {
    [ "$(ask 'INSMOD /lib/modules/late/vsock_loopback.ko')" = OK ] || { echo "cannot load vsock_loopback"; return 1; }
    for cid in 1 "$GUEST_CID"; do
        local got; got=$(ask "PROBE $cid 1023"); echo "dial CID $cid: $got"
        [ "$got" = "OK refused" ] || return 1
    done
    # Both arrive through the loopback transport, whose peers all have CID 1.
    [ "$(ask "GREP /run/agent.log vsock peer CID 1 is not in the allowed list")" = "OK found" ] \
        || { echo "no refusal of peer CID 1 in the agent's log"; return 1; }
}
check "with vsock_loopback loaded, the agent refuses guest processes dialing CID 1 or $GUEST_CID" with_loopback
check "the host still gets through afterwards" ctl ping

# 6. ports (issue 5): a dev server on 127.0.0.1 in the guest (the checker's echo listener) is
# detected with its process, and reached from here only through the agent's forwarder: hybrid
# CONNECT to the agent's port, a `forward` connection with a grant signed here (the host's role).
T_PORTS=$(date +%s%N)
DEV_PORT=8123
DEV_PID=
"${CTL_CMD[@]}" events > "$W/pevents.out" 2> "$W/pevents.err" &
EVPID=$!
events_ready() { # the subscription is live once its first heartbeat (every 2 s) arrives
    for _ in $(seq 100); do grep -q '"heartbeat"' "$W/pevents.out" && return 0; sleep 0.1; done
    echo "no heartbeat on the new events connection within 10 s"; cat "$W/pevents.err"; return 1
}
check "an events connection for the ports checks" events_ready
dev_listen() {
    local got; got=$(ask "LISTEN $DEV_PORT"); echo "$got"
    case "$got" in "OK "*) DEV_PID=${got#OK } ;; *) return 1 ;; esac
}
check "a dev server listens on 127.0.0.1:$DEV_PORT in the guest" dev_listen
has_owner() { # JSON_FILE: port, address, pid and process of the checker
    python3 - "$1" "$DEV_PORT" "$DEV_PID" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); port, pid = int(sys.argv[2]), int(sys.argv[3])
ok = d.get("port") == port and d.get("address") == "127.0.0.1" and d.get("scope") == "loopback" \
    and d.get("pid") == pid and d.get("process") == "vmtest-guest"
print(json.dumps(d, sort_keys=True)); sys.exit(0 if ok else 1)
PY
}
port_opened() {
    for _ in $(seq 100); do
        python3 "$REPO/tests/vm/host.py" event "$W/pevents.out" port_opened "$DEV_PORT" > "$W/opened.json" && break
        sleep 0.1
    done
    [ -s "$W/opened.json" ] || { echo "no port_opened event for $DEV_PORT within 10 s:"; grep -v heartbeat "$W/pevents.out"; return 1; }
    python3 -c 'import json,sys; e=json.load(open(sys.argv[1])); json.dump({**e, **(e.get("fields") or {})}, open(sys.argv[1], "w"))' "$W/opened.json"
    has_owner "$W/opened.json"
}
check "port_opened event for $DEV_PORT with the owning process (vmtest-guest, its pid)" port_opened
kill "$EVPID" 2>/dev/null || true; wait "$EVPID" 2>/dev/null || true; EVPID=
ports_listed() {
    ctl ports list > "$W/ports.json" || return 1
    python3 - "$W/ports.json" "$DEV_PORT" "$W/listener.json" <<'PY' || { cat "$W/ports.json"; return 1; }
import json, sys
d = json.load(open(sys.argv[1])); port = int(sys.argv[2])
p = next((p for p in d["ports"] if p["port"] == port), None)
if p is None or p["visibility"] != "private" or len(p["listeners"]) != 1:
    sys.exit(1)
l = p["listeners"][0]
json.dump({"port": port, "address": l.get("addr"), **l}, open(sys.argv[3], "w"))
PY
    has_owner "$W/listener.json"
}
check "ports list: $DEV_PORT private, its listener with pid and process" ports_listed
FWD_ADDR=
forward_echo() {
    start_forward FWPID FWD_ADDR fwd octocat || return 1
    echo "forwarding $FWD_ADDR -> guest 127.0.0.1:$DEV_PORT"
    for size in 1 65536 1048576; do
        python3 "$REPO/tests/vm/host.py" echo "tcp:$FWD_ADDR" "$size" || { cat "$W/fwd.err"; return 1; }
    done
}
check "ports forward (owner's grant) over real vsock: 1 B, 64 KiB, 1 MiB echoed byte for byte" forward_echo
forward_refused() {
    local addr; start_forward FW2PID addr fwd2 mallory || return 1
    if python3 "$REPO/tests/vm/host.py" echo "tcp:$addr" 1024; then
        echo "a grant for mallory reached the owner's private port"; return 1
    fi
    for _ in $(seq 50); do grep -q 'not-owner' "$W/fwd2.err" && break; sleep 0.1; done
    cat "$W/fwd2.err"; grep -q 'not-owner' "$W/fwd2.err"
}
check "a grant for another login on the private port is refused: not-owner" forward_refused
kill "$FW2PID" 2>/dev/null || true; wait "$FW2PID" 2>/dev/null || true; FW2PID=
check "the owner's forward still works after the refusal" \
    python3 "$REPO/tests/vm/host.py" echo "tcp:$FWD_ADDR" 4096
PORTS_MS=$(( ($(date +%s%N) - T_PORTS) / 1000000 ))
log "ports checks took ${PORTS_MS} ms"

# 7. lifecycle (issue 6): the devcontainer.json's commands run by the agent in its sandbox, as
# the remote user, with the session's secrets; the host sees the output redacted.
T_LC=$(date +%s%N)
lc() { # PHASE [ARGS]: `lifecycle run` of the workspace's devcontainer.json; output in $W/lc.*
    ctl lifecycle run --devcontainer .devcontainer/devcontainer.json --workspace /workspaces/app \
        --phase "$1" --repository octo/app --creator-access write "${@:2}" > "$W/lc.out" 2> "$W/lc.err"
}
lifecycle_create() {
    local rc=0; lc create || rc=$?
    sed 's/^/stdout: /' "$W/lc.out"; sed 's/^/stderr: /' "$W/lc.err"
    [ "$rc" = 0 ] || { echo "exit $rc, expected 0"; return 1; }
    grep -qx 'npm=\[redacted\]' "$W/lc.out" || { echo "no redacted secret line"; return 1; }
    grep -qx 'created' "$W/lc.out" || { echo "the command did not finish"; return 1; }
    ! grep -qF "${SECRETS[NPM_TOKEN]}" "$W/lc.out" "$W/lc.err" || { echo "the secret's value is in the output"; return 1; }
}
check "lifecycle run --phase create over real vsock: exit 0, the secret in its output redacted" lifecycle_create
written_by_user() {
    local got; got=$(ask "STAT /workspaces/app/created-by"); echo "$got"
    case "$got" in "OK "*" 1000 1000") ;; *) return 1 ;; esac
    [ "$(ask "GREP /workspaces/app/created-by 1000")" = "OK found" ] || { echo "id -u was not 1000"; return 1; }
}
check "the file the command wrote is owned by the remote user (uid 1000), which ran it" written_by_user
lifecycle_sandboxed() {
    lc create --json || true
    cp "$W/lc.out" "$W/lc-create.json"
    json "$W/lc.out" '(d["launcher"], d["profile"], d["user"]["uid"], d["commands"][0]["sandbox"]["landlock"]["status"], d["commands"][0]["sandbox"]["cgroup_mode"]) == ("sandbox", "trusted", 1000, "enforced", "v2") or sys.exit(1)' \
        || { cat "$W/lc.out" "$W/lc.err"; return 1; }
}
check "the run was sandboxed (Landlock enforced, cgroup v2), trusted profile, uid 1000 (--json)" lifecycle_sandboxed
lifecycle_fails() {
    local rc=0; lc start || rc=$?
    sed 's/^/stdout: /' "$W/lc.out"; sed 's/^/stderr: /' "$W/lc.err"
    [ "$rc" = 7 ] || { echo "exit $rc, expected 7 (the command's status)"; return 1; }
    grep -qx starting "$W/lc.out"
}
check "lifecycle run --phase start: a failing command's exit status (7) reaches the host" lifecycle_fails
lifecycle_restricted_hostile() {
    local rc=0
    ctl lifecycle run --devcontainer .devcontainer/devcontainer.json --workspace /workspaces/app \
        --phase attach --repository octo/app --creator-access read > "$W/lc.out" 2> "$W/lc.err" || rc=$?
    sed 's/^/stdout: /' "$W/lc.out"; sed 's/^/stderr: /' "$W/lc.err"
    [ "$rc" = 0 ] || { echo "exit $rc, expected 0"; return 1; }
    grep -qx 998 "$W/lc.out" || { echo "not the restricted principal (uid 998)"; return 1; }
    for ok in ok-env ok-gitconfig ok-hook ok-tmp ok-loopback hostile-done; do
        grep -qx "$ok" "$W/lc.out" || { echo "missing $ok"; return 1; }
    done
    ! grep -q LEAK "$W/lc.out" || { echo "an attack worked"; return 1; }
    ctl lifecycle run --devcontainer .devcontainer/devcontainer.json --workspace /workspaces/app \
        --phase attach --repository octo/app --creator-access read --json > "$W/lc.json" 2> /dev/null || true
    json "$W/lc.json" '(d["profile"], d["user"]["uid"], d["commands"][0]["sandbox"]["world"]["ipc_namespace"]) == ("restricted", 998, True) or sys.exit(1)' \
        || { cat "$W/lc.json"; return 1; }
}
check "a restricted run (read access) is uid 998 and reaches neither the env file, .git config and hooks, the creator's /tmp nor its loopback dev server" lifecycle_restricted_hostile
LC_MS=$(( ($(date +%s%N) - T_LC) / 1000000 ))
log "lifecycle checks took ${LC_MS} ms"

# 8. optional: control-channel latency and forward throughput over real vsock
if [ "$VM_LONG" = 1 ]; then
    log "VM_LONG: $PINGS pings on one connection"
    python3 "$REPO/tests/vm/host.py" pings "$W/vm.vsock" 1023 "$W/key" "$PINGS" | tee "$W/pings.out"
    echo "RESULT boot_to_agent_ms=$BOOT_MS ping $(cat "$W/pings.out")"
    log "VM_LONG: $FWD_RUNS x $FWD_MIB MiB echoed through the forward, and over raw vsock"
    for i in $(seq "$FWD_RUNS"); do
        f=$(python3 "$REPO/tests/vm/host.py" echo "tcp:$FWD_ADDR" $((FWD_MIB << 20))) \
            || die "forward throughput run $i failed"
        r=$(python3 "$REPO/tests/vm/host.py" echo "hybrid:$W/vm.vsock:5001" $((FWD_MIB << 20))) \
            || die "raw vsock throughput run $i failed"
        echo "RESULT run=$i forward $f raw_vsock $r"
    done
fi
kill "$FWPID" 2>/dev/null || true; wait "$FWPID" 2>/dev/null || true; FWPID=

# 9. power off
if ! vm_poweroff; then
    FAIL=$((FAIL + 1)); echo "FAIL the VM did not power off by itself"
else
    check "clean power-off" grep -q 'reboot: Power down' "$W/console.log"
fi

log "boot to first answer ${BOOT_MS} ms; total $(elapsed)"
echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
