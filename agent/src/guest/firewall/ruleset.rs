//! The nftables ruleset text, built by a pure function from the validated config.
//!
//! The text replaces the agent's table atomically: `nft -f` runs a file as ONE transaction, and
//! the file starts with `table inet T` (create if missing, a no-op otherwise) followed by
//! `delete table inet T`, so a restarted agent swaps the old table for the new one with no moment
//! in which neither (or both) is loaded, and a first start does not fail on a missing table.
//!
//! What the chains do (each rule's reason is a comment in the generated text too):
//!
//! ```text
//!  input  (policy accept)  lo → accept; established,related → accept;
//!                          IPv6 neighbour discovery, DHCP replies → accept;
//!                          TCP SYN (new connection) → drop; other TCP → accept (see below);
//!                          any other new flow (UDP, SCTP, ICMP echo) → drop
//!  output (policy accept)  lo, internal bridges (docker0, br-*) → accept;
//!                          DHCP, neighbour discovery, DNS to the configured resolvers → accept;
//!                          allowed ranges → accept; blocked ranges (v4, v6 sets) → drop
//! ```
//!
//! - vsock (the host's control channel and forwarded connections) is not IP: its packets never
//!   reach a netfilter hook, so neither chain can cut the agent off from the host.
//! - The inbound TCP rule matches SYNs only, not `ct state new`: conntrack starts tracking in a
//!   namespace only once a `ct` rule exists, and then classifies mid-stream packets of
//!   connections that predate the table as `new`; dropping those broke live sessions in
//!   testing (`shared/reference/sandbox-ports.md` §6). Such packets are accepted instead.
//! - Outbound to the VM's own addresses leaves through `lo`, so it is never blocked even when
//!   the VM's address lies in a blocked range.
//! - Forwarded traffic (containers behind a bridge) is not filtered: Docker loads `br_netfilter`,
//!   so a forward-chain range drop would also cut container-to-container traffic on the same
//!   bridge. The host's own isolation covers that path.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::cidr::{Cidr, IfacePattern};

/// What goes into the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Table name (validated: letters, digits, `_`).
    pub(crate) table: String,
    /// Outbound destinations dropped.
    pub(crate) blocked: Vec<Cidr>,
    /// Exceptions inside the blocked ranges.
    pub(crate) allowed: Vec<Cidr>,
    /// DNS servers reachable on port 53 even inside a blocked range.
    pub(crate) resolvers: Vec<IpAddr>,
    /// Output interfaces that stay inside the VM (container bridges): never blocked.
    pub(crate) internal_interfaces: Vec<IfacePattern>,
}

/// `(v4, v6)` elements of a list of ranges, as nft set elements.
fn split(ranges: &[Cidr]) -> (Vec<String>, Vec<String>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for r in ranges {
        match r.addr() {
            IpAddr::V4(_) => v4.push(r.to_string()),
            IpAddr::V6(_) => v6.push(r.to_string()),
        }
    }
    (v4, v6)
}

/// Writes a named set; an empty list writes nothing (nft refuses `elements = { }`).
fn set(out: &mut String, name: &str, kind: &str, interval: bool, elems: &[String]) -> bool {
    if elems.is_empty() {
        return false;
    }
    let _ = writeln!(out, "\tset {name} {{");
    let _ = writeln!(out, "\t\ttype {kind}");
    if interval {
        // auto-merge: overlapping ranges in the config are merged instead of refused.
        let _ = writeln!(out, "\t\tflags interval");
        let _ = writeln!(out, "\t\tauto-merge");
    }
    let _ = writeln!(out, "\t\telements = {{ {} }}", elems.join(", "));
    let _ = writeln!(out, "\t}}");
    true
}

/// The full `nft -f` input that (re)creates the table.
pub fn ruleset(p: &Plan) -> String {
    let t = &p.table;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# codespace-agent firewall; replaces the table atomically"
    );
    let _ = writeln!(o, "table inet {t}");
    let _ = writeln!(o, "delete table inet {t}");
    let _ = writeln!(o, "table inet {t} {{");

    let (b4, b6) = split(&p.blocked);
    let (a4, a6) = split(&p.allowed);
    let r4: Vec<String> = p
        .resolvers
        .iter()
        .filter(|r| r.is_ipv4())
        .map(IpAddr::to_string)
        .collect();
    let r6: Vec<String> = p
        .resolvers
        .iter()
        .filter(|r| r.is_ipv6())
        .map(IpAddr::to_string)
        .collect();
    let has_b4 = set(&mut o, "blocked_v4", "ipv4_addr", true, &b4);
    let has_b6 = set(&mut o, "blocked_v6", "ipv6_addr", true, &b6);
    let has_a4 = set(&mut o, "allowed_v4", "ipv4_addr", true, &a4);
    let has_a6 = set(&mut o, "allowed_v6", "ipv6_addr", true, &a6);
    let has_r4 = set(&mut o, "resolvers_v4", "ipv4_addr", false, &r4);
    let has_r6 = set(&mut o, "resolvers_v6", "ipv6_addr", false, &r6);

    o.push_str(concat!(
        "\tchain input {\n",
        "\t\ttype filter hook input priority filter; policy accept;\n",
        "\t\tiif \"lo\" accept comment \"inside the VM: the forwarder connects here\"\n",
        "\t\tct state established,related accept comment \"answers to our own connections\"\n",
        "\t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert, nd-redirect } accept comment \"IPv6 needs neighbour discovery\"\n",
        "\t\tudp sport 67 udp dport 68 accept comment \"DHCPv4 replies (broadcast, untracked)\"\n",
        "\t\tudp sport 547 udp dport 546 accept comment \"DHCPv6 replies\"\n",
        "\t\ttcp flags & (fin | syn | rst | ack) == syn counter drop comment \"new inbound TCP connection\"\n",
        "\t\tmeta l4proto tcp accept comment \"mid-stream packets of connections older than the table\"\n",
        "\t\tct state new counter drop comment \"any other new inbound flow\"\n",
        "\t}\n",
    ));

    o.push_str("\tchain output {\n");
    o.push_str("\t\ttype filter hook output priority filter; policy accept;\n");
    o.push_str("\t\toif \"lo\" accept comment \"the VM's own addresses, whatever their range\"\n");
    for i in &p.internal_interfaces {
        let _ = writeln!(
            o,
            "\t\toifname \"{i}\" accept comment \"container bridge inside the VM\""
        );
    }
    o.push_str("\t\tudp dport { 67, 547 } accept comment \"DHCP lease renewal\"\n");
    o.push_str("\t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept comment \"IPv6 neighbour discovery\"\n");
    if has_r4 {
        o.push_str("\t\tip daddr @resolvers_v4 meta l4proto { tcp, udp } th dport 53 accept comment \"DNS\"\n");
    }
    if has_r6 {
        o.push_str("\t\tip6 daddr @resolvers_v6 meta l4proto { tcp, udp } th dport 53 accept comment \"DNS\"\n");
    }
    if has_a4 {
        o.push_str("\t\tip daddr @allowed_v4 accept\n");
    }
    if has_a6 {
        o.push_str("\t\tip6 daddr @allowed_v6 accept\n");
    }
    if has_b4 {
        o.push_str("\t\tip daddr @blocked_v4 counter drop comment \"internal network\"\n");
    }
    if has_b6 {
        o.push_str("\t\tip6 daddr @blocked_v6 counter drop comment \"internal network\"\n");
    }
    o.push_str("\t}\n}\n");
    o
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            table: "codespace_agent".into(),
            blocked: ["10.0.0.0/8", "169.254.0.0/16", "fc00::/7"]
                .iter()
                .map(|s| s.parse().unwrap())
                .collect(),
            allowed: vec!["10.0.0.2/32".parse().unwrap()],
            resolvers: vec!["10.0.0.3".parse().unwrap(), "fd00::53".parse().unwrap()],
            internal_interfaces: vec!["docker0".parse().unwrap(), "br-*".parse().unwrap()],
        }
    }

    #[test]
    fn golden() {
        let want = include_str!("fixtures/ruleset.nft");
        let got = ruleset(&plan());
        assert_eq!(got, want, "got:\n{got}");
    }

    #[test]
    fn empty_lists_leave_out_their_sets_and_rules() {
        let p = Plan {
            table: "t".into(),
            blocked: vec!["192.168.0.0/16".parse().unwrap()],
            allowed: vec![],
            resolvers: vec![],
            internal_interfaces: vec![],
        };
        let r = ruleset(&p);
        assert!(r.contains("set blocked_v4"));
        for absent in [
            "blocked_v6",
            "allowed_",
            "resolvers_",
            "oifname",
            "elements = {  }",
        ] {
            assert!(!r.contains(absent), "{absent} in\n{r}");
        }
        // The replace idiom is the first thing in the transaction.
        assert!(
            r.lines().nth(1) == Some("table inet t")
                && r.lines().nth(2) == Some("delete table inet t")
        );
        let none = Plan {
            blocked: vec![],
            ..p
        };
        assert!(!ruleset(&none).contains("daddr"));
    }
}
