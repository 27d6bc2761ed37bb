# tests/vm/image.sh — the systemd-booted guest's disk image (sourced by tests/vm/systemd.sh,
# after tests/vm/lib.sh, vm_kernel and vm_build).
#
#   vm_image   sets IMG: a directory with disk.raw (ext4, the whole root: systemd as init, the
#              .deb installed), initrd.cpio.gz (loads virtio and mounts it) and host.key
#
# What goes into the image, in order:
#   1. a Debian bookworm root from tests/debootstrap-root.sh (minbase + systemd, udev, kmod,
#      sudo, git, openssh-server), cached in $CACHE/rootfs/systemd by its package list;
#   2. the project's .deb (packaging/build-deb.sh from the static builds), installed in a chroot
#      with `apt-get install ./codespace-agent_*.deb` as an image builder does (the postinst
#      enables the unit and must not start it: no /proc in the chroot);
#   3. what a devcontainer base image has: a `codespace` user (uid 1000, bash) with passwordless
#      sudo in /etc/sudoers.d; what an image builder sets in the agent's config (`user`) and what
#      a test guest needs there (key_file, the codespace's owner, a 2 s heartbeat): see
#      vm_agent_config; two repositories under /workspaces (below);
#   4. the test checker (vmtest-guest) as a unit that runs only with codespace.vmtest=1 on the
#      kernel command line and powers the VM off when it exits;
#   5. the cloud kernel's virtio, vsock and sock_diag modules in /lib/modules (depmod): udev
#      loads the vsock transport at boot, the kernel sock_diag on the agent's first dump, as on a
#      cloud image.
# Then `mkfs.ext4 -d` turns the tree into disk.raw. The kernel's virtio PCI transport and
# virtio_blk are modules (ext4 is built in), so a small busybox initramfs loads them, mounts
# root= and hands over to init= (systemd).
#
# The result is cached in $CACHE/images/KEY, KEY being a hash of every input (the root's package
# list, the three binaries, packaging/, this file, the kernel version, busybox); the two newest
# are kept. QEMU opens disk.raw with snapshot=on, so the cached image is never written.
# shellcheck shell=bash

VM_IMAGE_PACKAGES=systemd,systemd-sysv,udev,kmod,sudo,git,openssh-server
VM_INITRD_MODULES="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk"

vm_image() {
    local key rootfs stage root deb t0
    rootfs=$("$REPO/tests/debootstrap-root.sh" "$CACHE/rootfs/systemd" "$VM_IMAGE_PACKAGES" | tail -1)
    key=$({
        cat "$rootfs.key"
        sha256sum "$AGENT" "$CTL" "$GUEST" /bin/busybox "${BASH_SOURCE[0]}" "$REPO/tests/vm/lib.sh" | cut -d' ' -f1
        (cd "$REPO" && find packaging -type f | sort | xargs sha256sum)
        echo "$kver"
    } | sha256sum | cut -c1-16)
    IMG="$CACHE/images/$key"
    if [ -f "$IMG/disk.raw" ]; then
        log "disk image cached: $IMG"
        return
    fi
    t0=$(date +%s%N)
    log "building the disk image $IMG"
    mkdir -p "$CACHE/images"
    stage="$IMG.tmp"
    rm -rf "$stage"; mkdir -p "$stage"
    root="$stage/root"
    cp -a "$rootfs" "$root"

    # 2. the .deb, as an image builder installs it
    deb=$("$REPO/packaging/build-deb.sh" --no-build --out "$stage/deb" | tail -1)
    [ -f "$deb" ] || die "packaging/build-deb.sh built no .deb"
    cp "$deb" "$root/tmp/"
    chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "./tmp/$(basename "$deb")" > "$stage/apt.log" 2>&1 \
        || { cat "$stage/apt.log" >&2; die "apt-get install of the .deb failed in the image root"; }
    rm -f "$root/tmp/$(basename "$deb")"
    [ -L "$root/etc/systemd/system/multi-user.target.wants/codespace-agent.service" ] \
        || die "the .deb's postinst did not enable codespace-agent.service"

    # 3. the devcontainer user, the agent's config, the repositories
    chroot "$root" useradd --create-home --uid 1000 --user-group --shell /bin/bash codespace
    echo 'codespace ALL=(root) NOPASSWD:ALL' > "$root/etc/sudoers.d/codespace"
    chmod 0440 "$root/etc/sudoers.d/codespace"
    echo codespace-vm > "$root/etc/hostname"
    # as image builders do: every VM makes its own machine-id (the agent's id) at first boot
    : > "$root/etc/machine-id"
    printf '/dev/vda / ext4 rw,relatime 0 0\n' > "$root/etc/fstab"
    head -c 32 /dev/urandom > "$stage/host.key"
    install -m 0600 "$stage/host.key" "$root/etc/codespace-agent/host.key"
    vm_agent_config "" > "$root/etc/codespace-agent/config.jsonc"
    vm_image_repositories "$root"

    # 4. the checker
    install -m 0755 "$GUEST" "$root/usr/local/sbin/vmtest-guest"
    cat > "$root/etc/systemd/system/vmtest-guest.service" <<EOF
# tests/vm/image.sh: the VM test's guest checker (tests/vm/guest/main.rs). It answers only the
# host, only in the test VM, and powers the VM off when the host asks it to (exit 0).
[Unit]
Description=VM test checker (vsock port 5000)
ConditionKernelCommandLine=$MARKER
SuccessAction=poweroff
[Service]
ExecStart=/usr/local/sbin/vmtest-guest
[Install]
WantedBy=multi-user.target
EOF
    ln -s ../vmtest-guest.service "$root/etc/systemd/system/multi-user.target.wants/vmtest-guest.service"

    # 5. kernel modules for udev
    mkdir -p "$root/lib/modules"
    cp -a "$(dirname "$kmoddir")" "$root/lib/modules/"
    chroot "$root" depmod "$kver"

    # the disk: the tree, with room to write (sparse)
    local mb
    mb=$(du -sm "$root" | cut -f1)
    mkfs.ext4 -q -F -L codespace-root -d "$root" "$stage/disk.raw" "$((mb * 3 / 2 + 512))M" \
        || die "mkfs.ext4 -d failed"
    vm_image_initrd "$stage"
    rm -rf "$root" "$stage/deb"
    rm -rf "$IMG"; mv "$stage" "$IMG"
    # keep the two newest images
    { ls -1dt "$CACHE"/images/*/ 2>/dev/null || true; } | tail -n +3 | xargs -r rm -rf
    log "disk image built in $(( ($(date +%s%N) - t0) / 1000000 )) ms ($(du -sm --apparent-size "$IMG/disk.raw" | cut -f1) MB, $(du -sm "$IMG/disk.raw" | cut -f1) MB used)"
}

# Two repositories, owned by the codespace user as clones are. octo/app is trusted (in the
# token's scope; the host runs it with --creator-access write): its postCreateCommand does what
# real repositories do (sudo, a system-wide install under /usr/local) and prints a secret (which
# must come back redacted and never reach the journal); its postStartCommand leaves a dev server
# running. other/untrusted is run with --creator-access read (restricted): each line of its
# postCreateCommand says LEAK-… when an attempt works.
vm_image_repositories() { # ROOT
    local root=$1
    mkdir -p "$root/workspaces/app/.devcontainer" "$root/workspaces/untrusted/.devcontainer"
    cat > "$root/workspaces/app/.devcontainer/devcontainer.json" <<'EOF'
{
  "image": "mcr.microsoft.com/devcontainers/base:debian",
  "postCreateCommand": "echo \"npm=$NPM_TOKEN\"; echo \"uid=$(id -u)\"; sudo -n true && echo sudo-ok && sudo sh -c 'echo installed > /usr/local/share/vmtest-trusted' && echo usr-local-ok",
  "postStartCommand": "nohup /usr/local/sbin/vmtest-guest serve 8123 > /tmp/dev-server.log 2>&1 & echo dev-server-started"
}
EOF
    cat > "$root/workspaces/untrusted/.devcontainer/devcontainer.json" <<'EOF'
{
  "image": "mcr.microsoft.com/devcontainers/base:debian",
  "postCreateCommand": "echo \"uid=$(id -u)\"; sudo -n true 2>/dev/null && echo LEAK-sudo || echo ok-sudo; touch /usr/local/share/vmtest-restricted 2>/dev/null && echo LEAK-usr-local || echo ok-usr-local; sudo -n touch /usr/local/share/vmtest-restricted 2>/dev/null && echo LEAK-usr-local-sudo || echo ok-usr-local-sudo; cat /run/codespace-agent/env/environment >/dev/null 2>&1 && echo LEAK-env || echo ok-env; echo restricted-done"
}
EOF
    local r
    for r in app untrusted; do
        mkdir -p "$root/workspaces/$r/.git/hooks"
        printf '[core]\n\tbare = false\n' > "$root/workspaces/$r/.git/config"
    done
    chown -R 1000:1000 "$root/workspaces/app" "$root/workspaces/untrusted"
}

# The initramfs: busybox, the virtio modules, and an /init that mounts root= and runs init=.
vm_image_initrd() { # DIR
    local ir="$1/initrd" m
    mkdir -p "$ir"/{bin,dev,proc,sys,newroot,lib/modules}
    cp /bin/busybox "$ir/bin/busybox"
    for m in $VM_INITRD_MODULES; do
        vm_module "$m" "$ir/lib/modules/$m.ko" || true # built in
    done
    cat > "$ir/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $VM_INITRD_MODULES; do
    [ -f /lib/modules/\$m.ko ] && { insmod /lib/modules/\$m.ko || echo "initrd: insmod \$m failed"; }
done
root=/dev/vda; init=/sbin/init; mode=ro
for w in \$(cat /proc/cmdline); do
    case "\$w" in root=*) root=\${w#root=} ;; init=*) init=\${w#init=} ;; rw) mode=rw ;; esac
done
for _ in \$(seq 100); do [ -b "\$root" ] && break; sleep 0.1; done
mount -t ext4 -o "\$mode" "\$root" /newroot || { echo "initrd: cannot mount \$root"; poweroff -f; }
mount --move /dev /newroot/dev
umount /sys /proc
exec switch_root /newroot "\$init"
EOF
    chmod 0755 "$ir/init"
    (cd "$ir" && find . | cpio -o -H newc --quiet | gzip -1 > "$1/initrd.cpio.gz")
    rm -rf "$ir"
}
