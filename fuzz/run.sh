#!/bin/bash
# Runs fuzz targets one after another (never two at once: each takes a core), each for
# SECONDS with its committed seeds and dictionary, and prints the coverage each reached.
# A manual or scheduled job, not part of .ci/run. Needs the nightly toolchain and cargo-fuzz.
#   fuzz/run.sh [SECONDS] [TARGET...]      default: 600 seconds, every target
# The growing corpus is kept in fuzz/corpus/<target> (ignored by git); crashes land in
# fuzz/artifacts/<target>. Exit 1 when a target found a crash.
set -u
cd "$(dirname "$0")"
seconds=${1:-600}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(frame handshake request grant host netlink envfile credential registry signing policy_document parse audit compose)
fi
dict_of() {
    case $1 in
        frame|handshake|request|grant|host) echo dict/wire.dict ;;
        envfile) echo dict/envfile.dict ;;
        credential) echo dict/credential.dict ;;
        policy_document) echo dict/policy.dict ;;
        *) echo "" ;;
    esac
}
cargo +nightly fuzz build || exit 1
status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    seeds=()
    [ -d "seeds/$t" ] && seeds=("seeds/$t")
    dict=$(dict_of "$t")
    args=(-max_total_time="$seconds" -print_final_stats=1 -timeout=30)
    [ -n "$dict" ] && args+=(-dict="$dict")
    log="corpus/$t.log"
    cargo +nightly fuzz run "$t" "corpus/$t" "${seeds[@]}" -- "${args[@]}" >"$log" 2>&1 || status=1
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    echo "$t: ${last:-no progress line, see fuzz/$log}"
    grep -E '^(==[0-9]+==ERROR|thread .* panicked|SUMMARY)' "$log" | head -3
done
exit $status
