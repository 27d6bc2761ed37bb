# codespace-agent: load the codespace's environment (secrets, GITHUB_TOKEN) into login shells.
# The agent writes the file on tmpfs, mode 0600, owned by the codespace's remote user; other
# users cannot read it, so for them this is a no-op. `set -a` exports every assignment.
# Sourced by sh, bash, dash, zsh (emulate sh) login shells: POSIX syntax only.
if [ -r /run/codespace-agent/env/environment ]; then
    set -a
    . /run/codespace-agent/env/environment
    set +a
fi
