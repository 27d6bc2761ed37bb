# codespace-agent: creates the restricted principal (sysusers.d/codespace-agent.conf) in an image
# root or on a live system. POSIX sh; sourced by the postinst and by install.sh, not executed.

CODESPACE_RESTRICTED_USER=codespace-restricted
CODESPACE_RESTRICTED_HOME=/var/lib/codespace-agent/restricted/home

# codespace_restricted_user_add ROOT SYSUSERS_CONF: adds the user to ROOT/etc/passwd and its
# group to ROOT/etc/group unless it exists (ROOT empty: this system). systemd-sysusers where it
# exists (it reads the same file the package installs), else useradd. Idempotent. The home is
# made by the agent at the first restricted run, owned by the user, 0700.
codespace_restricted_user_add() {
    _root=$1
    _conf=$2
    if [ ! -f "$_root/etc/passwd" ]; then
        echo "codespace-agent: ${_root:-/} has no etc/passwd; create the user $CODESPACE_RESTRICTED_USER there (sysusers.d/codespace-agent.conf) before restricted lifecycle runs" >&2
        return 0
    fi
    if grep -q "^$CODESPACE_RESTRICTED_USER:" "$_root/etc/passwd"; then
        return 0
    fi
    if command -v systemd-sysusers >/dev/null 2>&1 \
        && systemd-sysusers --root="${_root:-/}" "$_conf" >/dev/null 2>&1 \
        && grep -q "^$CODESPACE_RESTRICTED_USER:" "$_root/etc/passwd"; then
        return 0
    fi
    useradd ${_root:+--root "$_root"} --system --user-group --no-create-home \
        --home-dir "$CODESPACE_RESTRICTED_HOME" --shell /bin/sh \
        --comment "codespace-agent restricted lifecycle runs" "$CODESPACE_RESTRICTED_USER"
}
