//! The gate of every test that needs root (sandbox, cgroups, nftables, network namespaces, user
//! switching). CI runs as root (`.ci/run`); elsewhere such a test fails with a message saying
//! so, unless `CODESPACE_SKIP_ROOT_TESTS=1` asks to skip it (README, "Tests").
//!
//! One file for every test binary and for the library's own root tests: integration tests reach
//! it through `mod support` or `#[path]`, the library's unit tests through `#[path]` as well.

/// What a root test says when it cannot run.
pub const ROOT_MESSAGE: &str =
    "needs root (run .ci/run as root, or set CODESPACE_SKIP_ROOT_TESTS=1 to skip)";

/// `true`: run the test. `false` (after a skip line): not root, and skipping was asked for.
/// Panics when not root and skipping was not asked for, so a forgotten privilege is a failure,
/// not a silent pass.
pub fn root() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("CODESPACE_SKIP_ROOT_TESTS").is_some_and(|v| v == "1") {
        #[allow(clippy::print_stderr)] // the skip line is the point
        {
            eprintln!("skipped: {ROOT_MESSAGE}");
        }
        return false;
    }
    panic!("{ROOT_MESSAGE}");
}
