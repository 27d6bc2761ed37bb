//! Host names as credential helpers compare them: a DNS name (or an IPv4 address) with an
//! optional port, in lower case.
//!
//! Git sends `host=github.com` or `host=ghe.example:8443`; Docker asks for `ghcr.io` or
//! `registry.example:5000`. Both brokers answer only for an exact match with what the host
//! delivered, so both sides must spell a host one way. [`normalize`] is that one way:
//!
//! - labels of ASCII letters, digits and `-`, 1 to 63 bytes each, not starting or ending with
//!   `-`, separated by single dots, 253 bytes at most in all (RFC 1035's rules, which every
//!   registry and git host satisfies); no empty label, so no leading, trailing or double dot;
//! - an optional `:port`, 1 to 65535, in decimal without a leading zero;
//! - folded to lower case (DNS names are case-insensitive).
//!
//! Everything else is refused rather than cleaned up: user info (`user@host`), a path, a
//! query, spaces, percent-encoding, IPv6 literals. A refused host can never match, which is the
//! safe failure for a credential lookup.

/// Longest host name (RFC 1035).
pub const MAX_HOST_LEN: usize = 253;

/// Longest label (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

/// The host in its one spelling, or `None` when it is not a host name with an optional port
/// (see the module docs for the exact rules).
pub fn normalize(host: &str) -> Option<String> {
    let (name, port) = match host.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= MAX_LABEL_LEN
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let name_ok = name.len() <= MAX_HOST_LEN && name.split('.').all(label_ok);
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && !p.starts_with('0')
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u16>().is_ok()
    });
    (name_ok && port_ok).then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_folded_and_kept_with_their_port() {
        for (input, want) in [
            ("github.com", "github.com"),
            ("GHCR.IO", "ghcr.io"),
            ("ghe.example:8443", "ghe.example:8443"),
            ("127.0.0.1:5000", "127.0.0.1:5000"),
            ("localhost", "localhost"),
            ("a-b.c", "a-b.c"),
        ] {
            assert_eq!(normalize(input).as_deref(), Some(want), "{input}");
        }
    }

    #[test]
    fn anything_that_is_not_a_plain_host_is_refused() {
        let long_label = format!("{}.io", "a".repeat(64));
        let long_name = format!("{}io", "a.".repeat(127));
        for bad in [
            "",
            ".",
            "ghcr.io.",
            ".ghcr.io",
            "ghcr..io",
            "-x.io",
            "x-.io",
            "user@ghcr.io",
            "ghcr.io/v2/",
            "ghcr.io?x",
            "ghcr.io#x",
            "ghcr%2eio",
            "a b",
            "ghcr.io\n",
            "[::1]:5000",
            "h:0",
            "h:065",
            "h:99999",
            "h:",
            "h:+1",
            "h:1:2",
            "héllo.io",
            &long_label,
            &long_name,
        ] {
            assert_eq!(normalize(bad), None, "{bad:?}");
        }
    }
}
