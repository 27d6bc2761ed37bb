//! Address ranges (`10.0.0.0/8`, `fc00::/7`) and interface-name patterns as the firewall config
//! writes them, parsed into values that can only be valid: they are printed into nftables text,
//! so nothing that is not a well-formed prefix or name may get through.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address prefix with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Cidr {
    addr: IpAddr,
    len: u8,
}

/// Why a range or name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidrError {
    /// The address part is not an IP address.
    #[error("`{0}` is not an IP address or ADDRESS/PREFIX")]
    Address(String),
    /// The prefix length is not a number or too long for the family.
    #[error("`{text}`: prefix length must be 0..={max}")]
    Prefix {
        /// The range as written.
        text: String,
        /// 32 or 128.
        max: u8,
    },
    /// Bits are set after the prefix (`10.0.0.1/8`): probably a typo; say what was meant.
    #[error("`{text}` has host bits set; did you mean `{suggestion}`?")]
    HostBits {
        /// The range as written.
        text: String,
        /// The network it probably meant.
        suggestion: String,
    },
    /// An interface pattern that is not a Linux interface name (with an optional final `*`).
    #[error("`{0}` is not an interface name (1-15 of A-Z a-z 0-9 _ . -, optionally ending in *)")]
    Interface(String),
}

impl Cidr {
    /// The network address.
    pub(crate) fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    #[cfg(test)]
    pub(crate) fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether `ip` is inside the range (an IPv4 range never contains an IPv6 address).
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => mask32(u32::from(a), self.len) == u32::from(n),
            (IpAddr::V6(n), IpAddr::V6(a)) => mask128(u128::from(a), self.len) == u128::from(n),
            _ => false,
        }
    }
}

fn mask32(v: u32, len: u8) -> u32 {
    v & u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask128(v: u128, len: u8) -> u128 {
    v & u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, CidrError> {
        let (a, p) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| CidrError::Address(text.into()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match p {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(l) if l <= max && !p.starts_with('+') => l,
                _ => {
                    return Err(CidrError::Prefix {
                        text: text.into(),
                        max,
                    })
                }
            },
        };
        let network = match addr {
            IpAddr::V4(v) => IpAddr::V4(mask32(u32::from(v), len).into()),
            IpAddr::V6(v) => IpAddr::V6(mask128(u128::from(v), len).into()),
        };
        if network != addr {
            return Err(CidrError::HostBits {
                text: text.into(),
                suggestion: format!("{network}/{len}"),
            });
        }
        Ok(Self { addr, len })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// An interface name or prefix pattern (`docker0`, `br-*`), as nftables' `oifname` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct IfacePattern(String);

impl FromStr for IfacePattern {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, CidrError> {
        let name = s.strip_suffix('*').unwrap_or(s);
        // IFNAMSIZ is 16 including the NUL.
        let ok = !name.is_empty()
            && name.len() <= 15
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(CidrError::Interface(s.into()))
        }
    }
}

impl fmt::Display for IfacePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for s in [
            "10.0.0.0/8",
            "0.0.0.0/0",
            "169.254.0.0/16",
            "fc00::/7",
            "fe80::/10",
            "::/0",
        ] {
            assert_eq!(s.parse::<Cidr>().unwrap().to_string(), s);
        }
        assert_eq!(
            "192.0.2.7".parse::<Cidr>().unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert_eq!("2001:db8::1".parse::<Cidr>().unwrap().prefix_len(), 128);
    }

    #[test]
    fn refuses_with_a_reason() {
        let e = |s: &str| s.parse::<Cidr>().unwrap_err().to_string();
        assert!(
            e("10.0.0.1/8").contains("did you mean `10.0.0.0/8`"),
            "{}",
            e("10.0.0.1/8")
        );
        assert!(e("fc00::1/7").contains("fc00::/7"));
        assert!(e("10.0.0.0/33").contains("0..=32"));
        assert!(e("::/129").contains("0..=128"));
        assert!(e("10.0.0.0/+8").contains("prefix"));
        assert!(e("10.0.0.0/").contains("prefix"));
        assert!(e("ten/8").contains("not an IP"));
        assert!(e("10.0.0.0/8; flush ruleset").contains("prefix"));
        assert!(e("").contains("not an IP"));
    }

    #[test]
    fn contains() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.255.1.2".parse().unwrap()));
        assert!(!c.contains("11.0.0.0".parse().unwrap()));
        assert!(!c.contains("::a00:1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        let ula: Cidr = "fc00::/7".parse().unwrap();
        assert!(ula.contains("fd12::1".parse().unwrap()));
        assert!(!ula.contains("fe80::1".parse().unwrap()));
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_parsed_or_refused_without_panicking(text in "\\PC{0,60}") {
            let _ = text.parse::<Cidr>();
            let _ = text.parse::<IfacePattern>();
        }

        /// A network printed by us parses back to itself; anything accepted prints as
        /// `ADDRESS/LEN` with no host bits, the only form that reaches the nft text.
        #[test]
        fn networks_round_trip(a: u32, len in 0u8..=32) {
            let net = std::net::Ipv4Addr::from(mask32(a, len));
            let c: Cidr = format!("{net}/{len}").parse().unwrap();
            proptest::prop_assert_eq!(c.to_string(), format!("{net}/{len}"));
            proptest::prop_assert!(c.contains(IpAddr::V4(std::net::Ipv4Addr::from(a))));
        }
    }

    #[test]
    fn interface_patterns() {
        for s in ["docker0", "br-*", "eth0.100", "veth_a-b", "a"] {
            assert_eq!(s.parse::<IfacePattern>().unwrap().to_string(), s);
        }
        for s in [
            "",
            "*",
            "sixteen-chars-xx",
            "eth 0",
            "eth0\"",
            "br-*x",
            "a}",
        ] {
            assert!(s.parse::<IfacePattern>().is_err(), "{s}");
        }
    }
}
