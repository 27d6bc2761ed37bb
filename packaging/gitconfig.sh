# codespace-agent: the system git configuration block, shared by the .deb maintainer scripts and
# install.sh so both produce byte-identical results. POSIX sh; sourced, not executed.
#
# Debian's git reads only /etc/gitconfig at system level (no /etc/gitconfig.d), and git may not be
# installed when the package is (an image builder may add it later), so the block is written as
# text rather than with `git config --system`. It is delimited by marker comments: adding is
# idempotent (an existing block is replaced by the current one, so an upgrade brings new lines)
# and removal on purge deletes exactly the block.
#
# credential.helper   asks the agent's broker (answers only for the token's host and only for
#                     repositories in the token's scope)
# credential.useHttpPath  git sends the repository path, which the broker needs to check scope
# include.path        the file the agent writes while commit signing is on for the codespace
#                     (gpg.format, the signing program, commit/tag.gpgSign); git ignores a
#                     missing include, so without it nothing is signed

CODESPACE_GITCONFIG_BEGIN='# codespace-agent: begin (managed by the codespace-agent package)'
CODESPACE_GITCONFIG_END='# codespace-agent: end'

# codespace_gitconfig_add FILE
codespace_gitconfig_add() {
    if [ -f "$1" ] && grep -qxF "$CODESPACE_GITCONFIG_BEGIN" "$1"; then
        codespace_gitconfig_remove "$1"
    fi
    mkdir -p "$(dirname "$1")"
    {
        printf '%s\n' "$CODESPACE_GITCONFIG_BEGIN"
        printf '[credential]\n'
        printf '\thelper = !/usr/bin/codespace-agent git-credential\n'
        printf '\tuseHttpPath = true\n'
        printf '[include]\n'
        printf '\tpath = /run/codespace-agent-git/signing.gitconfig\n'
        printf '%s\n' "$CODESPACE_GITCONFIG_END"
    } >> "$1"
    chmod 0644 "$1"
}

# codespace_gitconfig_remove FILE
codespace_gitconfig_remove() {
    [ -f "$1" ] || return 0
    grep -qxF "$CODESPACE_GITCONFIG_BEGIN" "$1" || return 0
    tmp="$1.codespace-agent.tmp"
    awk -v b="$CODESPACE_GITCONFIG_BEGIN" -v e="$CODESPACE_GITCONFIG_END" '
        $0 == b { skip = 1; next }
        skip && $0 == e { skip = 0; next }
        !skip { print }
    ' "$1" > "$tmp"
    if [ -s "$tmp" ]; then
        chmod 0644 "$tmp"
        mv "$tmp" "$1"
    else
        # the file held only our block: leave no empty /etc/gitconfig behind
        rm -f "$tmp" "$1"
    fi
}
