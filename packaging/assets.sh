# codespace-agent: reads the installed file set from [package.metadata.deb] in agent/Cargo.toml,
# the single source of truth shared by `cargo deb`, build-deb.sh and install.sh. POSIX sh;
# sourced, not executed.

# codespace_assets CARGO_TOML: prints one "SOURCE DEST MODE" line per asset (sources relative to
# the crate directory, destinations relative to the root). Fails if the list is empty or a line in
# the assets block does not have the expected one-asset-per-line form.
codespace_assets() {
    awk '
        /^\[package\.metadata\.deb\]/ { in_deb = 1; next }
        /^\[/ { in_deb = 0 }
        in_deb && /^assets = \[/ { in_assets = 1; next }
        in_assets && /^\]/ { in_assets = 0; next }
        in_assets {
            line = $0
            if (match(line, /^ *\["[^"]+", "[^"]+", "[0-7]+"\],? *$/) == 0) {
                printf "assets.sh: unexpected asset line: %s\n", line > "/dev/stderr"
                bad = 1
                next
            }
            gsub(/[][",]/, " ", line)
            split(line, f, " ")
            print f[1], f[2], f[3]
            n++
        }
        END {
            if (bad) exit 1
            if (n == 0) { print "assets.sh: no assets found in [package.metadata.deb]" > "/dev/stderr"; exit 1 }
        }
    ' "$1"
}
