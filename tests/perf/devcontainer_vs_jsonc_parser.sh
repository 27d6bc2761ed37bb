#!/usr/bin/env bash
# Parse + full audit (ours, Rust) against parse alone (Microsoft's jsonc-parser on Node, the parser
# devcontainers/cli uses), on the same files in the same run:
#   1. the real-world corpus (../shared/corpus/devcontainer/real, all files as one pass),
#   2. a generated ~1 MiB devcontainer.json (gen_large.py, deterministic).
# Prints a Markdown table with medians and the ratio; copy it into README.md here.
# Needs: node + npm (Debian: nodejs npm), python3, cargo.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# The shared corpus sits next to the checkout (/work/main) or next to the worktrees (/work/wt/x).
corpus="$root/../shared/corpus/devcontainer/real"
[ -d "$corpus" ] || corpus="$root/../../shared/corpus/devcontainer/real"
out="$here/out"
mkdir -p "$out"

[ -d "$here/node_modules/jsonc-parser" ] || (cd "$here" && npm ci --no-audit --no-fund >/dev/null)
python3 "$here/gen_large.py" "$out/large.json"
(cd "$root" && cargo build --release -q -p codespace-devcontainer --example parse_audit_timing)
rust="$root/target/release/examples/parse_audit_timing"

if [ -d "$corpus" ]; then
    mapfile -t corpus_files < <(find "$corpus" -name '*.json' -type f | sort)
else
    echo "note: $corpus not found; measuring the generated file only" >&2
    corpus_files=()
fi

measure() { # name iterations files...
    local name=$1 iters=$2; shift 2
    local ours peer
    ours=$("$rust" "$iters" "$@")
    peer=$(node "$here/jsonc_node.mjs" "$iters" "$@")
    python3 - "$name" "$ours" "$peer" <<'PY'
import json, sys
name, ours, peer = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
o, p = ours["median_ns"], peer["median_ns"]
print(f"| {name} | {ours['files']} | {ours['bytes']:,} | {o/1e6:.3f} ms | {p/1e6:.3f} ms | {p/o:.1f}x |")
PY
}

echo "| input | files | bytes | ours: parse + audit (median) | jsonc-parser: parse only (median) | speed-up |"
echo "|---|---|---|---|---|---|"
if [ ${#corpus_files[@]} -gt 0 ]; then measure "real corpus" 300 "${corpus_files[@]}"; fi
measure "generated 1 MiB" 30 "$out/large.json"

# What bounds our side: the same passes cut short (see PARSE_AUDIT_STAGE in parse_audit_timing.rs).
stages() { # name iterations files...
    local name=$1 iters=$2; shift 2
    local row="| $name"
    for stage in scan ast parse all; do
        row+=" | $(PARSE_AUDIT_STAGE=$stage "$rust" "$iters" "$@" | python3 -c 'import json,sys; print("%.3f ms" % (json.load(sys.stdin)["median_ns"] / 1e6))')"
    done
    echo "$row |"
}
echo
echo "| input | jsonc-parser Scanner alone | jsonc-parser parse_to_ast | parse_devcontainer | parse + audit |"
echo "|---|---|---|---|---|"
if [ ${#corpus_files[@]} -gt 0 ]; then stages "real corpus" 300 "${corpus_files[@]}"; fi
stages "generated 1 MiB" 30 "$out/large.json"
echo
echo "machine: $(nproc) cores, $(uname -m), $(node --version), $(rustc --version)"
