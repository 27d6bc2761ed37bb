# codespace-agent: creates the package's users (sysusers.d/codespace-agent.conf: the network side
# `codespace-agent` and the restricted principal `codespace-restricted`) in an image root or on a
# live system. POSIX sh; sourced by the postinst and by install.sh, not executed.

CODESPACE_NETWORK_USER=codespace-agent
CODESPACE_RESTRICTED_USER=codespace-restricted
CODESPACE_RESTRICTED_HOME=/var/lib/codespace-agent/restricted/home

# codespace_users_add ROOT SYSUSERS_CONF: adds both users to ROOT/etc/passwd and their groups to
# ROOT/etc/group unless they exist (ROOT empty: this system). systemd-sysusers where it exists (it
# reads the same file the package installs), else useradd. Idempotent. The restricted home is
# made by the agent at the first restricted run, owned by the user, 0700.
codespace_users_add() {
    _root=$1
    _conf=$2
    if [ ! -f "$_root/etc/passwd" ]; then
        echo "codespace-agent: ${_root:-/} has no etc/passwd; create the users $CODESPACE_NETWORK_USER and $CODESPACE_RESTRICTED_USER there (sysusers.d/codespace-agent.conf)" >&2
        return 0
    fi
    if grep -q "^$CODESPACE_NETWORK_USER:" "$_root/etc/passwd" \
        && grep -q "^$CODESPACE_RESTRICTED_USER:" "$_root/etc/passwd"; then
        return 0
    fi
    if command -v systemd-sysusers >/dev/null 2>&1 \
        && systemd-sysusers --root="${_root:-/}" "$_conf" >/dev/null 2>&1 \
        && grep -q "^$CODESPACE_NETWORK_USER:" "$_root/etc/passwd" \
        && grep -q "^$CODESPACE_RESTRICTED_USER:" "$_root/etc/passwd"; then
        return 0
    fi
    _codespace_useradd "$_root" "$CODESPACE_NETWORK_USER" /nonexistent /usr/sbin/nologin \
        "codespace-agent network side"
    _codespace_useradd "$_root" "$CODESPACE_RESTRICTED_USER" "$CODESPACE_RESTRICTED_HOME" /bin/sh \
        "codespace-agent restricted lifecycle runs"
}

# _codespace_useradd ROOT NAME HOME SHELL COMMENT: one system user with its own group, unless it
# exists.
_codespace_useradd() {
    grep -q "^$2:" "$1/etc/passwd" && return 0
    useradd ${1:+--root "$1"} --system --user-group --no-create-home \
        --home-dir "$3" --shell "$4" --comment "$5" "$2"
}
