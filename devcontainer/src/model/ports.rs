//! Ports: `forwardPorts`, `appPort`, `portsAttributes` and `otherPortsAttributes`.
//!
//! * `forwardPorts`: tool-level forwarding. A number `1..=65535`, or `"service:port"` to forward a
//!   port of another compose service.
//! * `appPort`: published by `docker run -p` at creation. A number `n` becomes
//!   `-p 127.0.0.1:n:n` (loopback only); a string is passed to `-p` unchanged, so `"8080:80"`
//!   listens on **every** host interface. The string is parsed into [`PublishSpec`] so the audit
//!   can tell.
//! * `portsAttributes` keys are a port, a range `"40000-55000"`, or a regular expression over the
//!   process command line.
//!
//! Numbers must be written as integers: `3000.0`, `1e3` or `-1` are errors (JavaScript would turn
//! some of them into ports, but a port written that way is not what a reviewer reads).

use crate::error::{located, ErrorSink};
use crate::node::{Node, NodeValue};
use crate::span::Located;

/// An entry of `forwardPorts`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardPort {
    /// A port of the dev container.
    Port(u16),
    /// `"host:port"`: a port of another compose service.
    Service {
        /// The service / host name.
        host: String,
        /// Its port.
        port: u16,
    },
}

/// An entry of `appPort`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AppPort {
    /// A number: published on 127.0.0.1 only.
    Port(u16),
    /// A string passed to `docker run -p` unchanged.
    Publish(PublishSpec),
}

/// A parsed `-p` value: `[ip:][hostPort:]containerPort[/protocol]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishSpec {
    /// The string as written.
    pub raw: String,
    /// Host interface (`None`: all interfaces).
    pub host_ip: Option<String>,
    /// Host port or range (`None`/empty: a random port).
    pub host_port: Option<String>,
    /// Container port or range.
    pub container_port: String,
    /// `tcp`/`udp`/`sctp` if given.
    pub protocol: Option<String>,
}

impl PublishSpec {
    /// Parse a `-p` value.
    ///
    /// # Errors
    /// A message when the container port is not a port or range.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let (main, protocol) = match raw.rsplit_once('/') {
            Some((m, p)) => (m, Some(p.to_owned())),
            None => (raw, None),
        };
        let (host_ip, rest) = if let Some(after) = main.strip_prefix('[') {
            let (ip, rest) = after
                .split_once(']')
                .ok_or_else(|| format!("{raw:?}: unclosed '[' in IPv6 address"))?;
            let rest = rest
                .strip_prefix(':')
                .ok_or_else(|| format!("{raw:?}: expected ':' after the IPv6 address"))?;
            (Some(ip.to_owned()), rest)
        } else {
            (None, main)
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (ip, host_port, container) = match (host_ip, parts.as_slice()) {
            (None, [c]) => (None, None, *c),
            (None, [h, c]) => (None, Some(*h), *c),
            (None, [ip, h, c]) => (Some((*ip).to_owned()), Some(*h), *c),
            (Some(ip), [h, c]) => (Some(ip), Some(*h), *c),
            _ => {
                return Err(format!(
                    "{raw:?} is not [ip:][hostPort:]containerPort[/protocol]"
                ))
            }
        };
        if !is_port_or_range(container) {
            return Err(format!(
                "{raw:?}: container port {container:?} is not a port (1-65535) or range"
            ));
        }
        if let Some(h) = host_port.filter(|h| !h.is_empty() && !is_port_or_range(h)) {
            return Err(format!(
                "{raw:?}: host port {h:?} is not a port (1-65535) or range"
            ));
        }
        Ok(Self {
            raw: raw.to_owned(),
            host_ip: ip.filter(|i| !i.is_empty()),
            host_port: host_port.map(str::to_owned),
            container_port: container.to_owned(),
            protocol,
        })
    }

    /// Whether the port is published on every host interface (no IP, `0.0.0.0` or `::`).
    #[must_use]
    pub fn binds_all_interfaces(&self) -> bool {
        matches!(self.host_ip.as_deref(), None | Some("0.0.0.0" | "::" | ""))
    }
}

fn is_port_or_range(s: &str) -> bool {
    match s.split_once('-') {
        Some((a, b)) => parse_port_text(a).is_some() && parse_port_text(b).is_some(),
        None => parse_port_text(s).is_some(),
    }
}

/// `"1".."65535"` written as plain decimal digits.
#[must_use]
pub fn parse_port_text(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|p| *p != 0)
}

/// A port number node (integer 1..=65535) or an error.
pub fn port_number(node: &Node, property: &str, errors: &mut ErrorSink) -> Option<u16> {
    let NodeValue::Number(text) = &node.value else {
        errors.wrong_type(node, property, "a port number (1-65535)");
        return None;
    };
    let port = parse_port_text(text);
    if port.is_none() {
        errors.invalid(
            node,
            property,
            format!("{text} is not a port; expected an integer from 1 to 65535"),
        );
    }
    port
}

/// Parse `forwardPorts`.
pub fn parse_forward_ports(node: &Node, errors: &mut ErrorSink) -> Vec<Located<ForwardPort>> {
    const PROP: &str = "forwardPorts";
    let Some(items) = node.elements() else {
        errors.wrong_type(node, PROP, "an array of ports or \"host:port\" strings");
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let parsed = match &item.value {
            NodeValue::Number(_) => port_number(item, PROP, errors).map(ForwardPort::Port),
            // The CLI types entries as number | string: `"3000"` is port 3000.
            NodeValue::String(s) if parse_port_text(s).is_some() => {
                parse_port_text(s).map(ForwardPort::Port)
            }
            NodeValue::String(s) => {
                let service = s.split_once(':').and_then(|(h, p)| {
                    let host_ok = !h.is_empty()
                        && h.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                    let port = parse_port_text(p)?;
                    host_ok.then(|| ForwardPort::Service {
                        host: h.to_owned(),
                        port,
                    })
                });
                if service.is_none() {
                    errors.invalid(
                        item,
                        PROP,
                        format!("{s:?} is not \"host:port\" (lower-case host, port 1-65535)"),
                    );
                }
                service
            }
            _ => {
                errors.wrong_type(item, PROP, "a port number or a \"host:port\" string");
                None
            }
        };
        out.extend(parsed.map(|p| located(item, p)));
    }
    out
}

/// Parse `appPort` (a number, a string, or an array of them).
pub fn parse_app_port(node: &Node, errors: &mut ErrorSink) -> Vec<Located<AppPort>> {
    let items: Vec<&Node> = match node.elements() {
        Some(items) => items.iter().collect(),
        None => vec![node],
    };
    let mut out = Vec::new();
    for item in items {
        let parsed = match &item.value {
            NodeValue::Number(_) => port_number(item, "appPort", errors).map(AppPort::Port),
            NodeValue::String(s) => match PublishSpec::parse(s) {
                Ok(p) => Some(AppPort::Publish(p)),
                Err(msg) => {
                    errors.invalid(item, "appPort", msg);
                    None
                }
            },
            _ => {
                errors.wrong_type(
                    item,
                    "appPort",
                    "a port number, a \"-p\" string, or an array of them",
                );
                None
            }
        };
        out.extend(parsed.map(|p| located(item, p)));
    }
    out
}

/// A `portsAttributes` key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortKey {
    /// One port.
    Port(u16),
    /// An inclusive range `a-b`.
    Range(u16, u16),
    /// A regular expression matched against the process command line.
    Pattern(String),
}

impl PortKey {
    /// Classify a key as written.
    #[must_use]
    pub fn parse(key: &str) -> Self {
        if let Some(p) = parse_port_text(key) {
            return Self::Port(p);
        }
        if let Some((a, b)) = key.split_once('-') {
            if let (Some(a), Some(b)) = (parse_port_text(a), parse_port_text(b)) {
                return Self::Range(a, b);
            }
        }
        Self::Pattern(key.to_owned())
    }
}

/// `onAutoForward`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnAutoForward {
    /// `notify` (default)
    Notify,
    /// `openBrowser`
    OpenBrowser,
    /// `openBrowserOnce`
    OpenBrowserOnce,
    /// `openPreview`
    OpenPreview,
    /// `silent`
    Silent,
    /// `ignore`
    Ignore,
}

/// `protocol` of a forwarded port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortProtocol {
    /// `http`
    Http,
    /// `https`
    Https,
}

/// The attributes of one port entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortAttributes {
    /// `label`
    pub label: Option<Located<String>>,
    /// `protocol`
    pub protocol: Option<Located<PortProtocol>>,
    /// `onAutoForward`
    pub on_auto_forward: Option<Located<OnAutoForward>>,
    /// `requireLocalPort`
    pub require_local_port: Option<Located<bool>>,
    /// `elevateIfNeeded`: the tool may ask for host elevation to bind a low port.
    pub elevate_if_needed: Option<Located<bool>>,
}

/// Parse one attributes object; unknown members go to `unknown`.
pub fn parse_port_attributes(
    node: &Node,
    property: &str,
    errors: &mut ErrorSink,
    unknown: &mut Vec<crate::model::UnknownProperty>,
) -> Option<PortAttributes> {
    if node.members().is_none() {
        errors.wrong_type(node, property, "an object of port attributes");
        return None;
    }
    let mut a = PortAttributes::default();
    for m in node.effective_members() {
        let v = &m.value;
        let prop = format!("{property}.{}", m.key);
        match m.key.as_str() {
            "label" => a.label = errors.string(v, &prop),
            "protocol" => {
                a.protocol = crate::model::enum_value(
                    v,
                    &prop,
                    &[("http", PortProtocol::Http), ("https", PortProtocol::Https)],
                    errors,
                );
            }
            "onAutoForward" => {
                a.on_auto_forward = crate::model::enum_value(
                    v,
                    &prop,
                    &[
                        ("notify", OnAutoForward::Notify),
                        ("openBrowser", OnAutoForward::OpenBrowser),
                        ("openBrowserOnce", OnAutoForward::OpenBrowserOnce),
                        ("openPreview", OnAutoForward::OpenPreview),
                        ("silent", OnAutoForward::Silent),
                        ("ignore", OnAutoForward::Ignore),
                    ],
                    errors,
                );
            }
            "requireLocalPort" => a.require_local_port = errors.boolean(v, &prop),
            "elevateIfNeeded" => a.elevate_if_needed = errors.boolean(v, &prop),
            _ => unknown.push(crate::model::UnknownProperty::of(m)),
        }
    }
    Some(a)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn forward_ports() {
        let n = Node::from_json_value(&json!([3000, "db:5432", 65535, 1]));
        let mut e = ErrorSink::new();
        let p = parse_forward_ports(&n, &mut e);
        assert!(e.is_empty());
        assert_eq!(
            p[1].value,
            ForwardPort::Service {
                host: "db".into(),
                port: 5432
            }
        );
        let bad = crate::parse::parse_tree(
            r#"{"p": [1e400, 99999999999999999999, 3000.0, -1, 65536, 0, "3000", "DB:1", "db:0", true, 08]}"#,
        );
        // `08` is a syntax error in JSON; check it separately.
        assert!(bad.is_err());
        let t = crate::parse::parse_tree(
            r#"{"p": [1e400, 99999999999999999999, 3000.0, -1, 65536, 0, "0", "DB:1", "db:0", true]}"#,
        )
        .unwrap();
        let mut e = ErrorSink::new();
        assert!(parse_forward_ports(t.get("p").unwrap(), &mut e).is_empty());
        assert_eq!(e.len(), 10);
        // The CLI types an entry as number | string: "3000" is port 3000.
        let t = crate::parse::parse_tree(r#"{"p": ["3000"]}"#).unwrap();
        let mut e = ErrorSink::new();
        let p = parse_forward_ports(t.get("p").unwrap(), &mut e);
        assert!(e.is_empty());
        assert_eq!(p[0].value, ForwardPort::Port(3000));
    }

    #[test]
    fn app_ports() {
        let cases = [
            ("8080", None, Some("8080"), "80", true),
            (
                "0.0.0.0:2375:2375",
                Some("0.0.0.0"),
                Some("2375"),
                "2375",
                true,
            ),
            (
                "127.0.0.1:8080:80/tcp",
                Some("127.0.0.1"),
                Some("8080"),
                "80",
                false,
            ),
            ("[::1]:80:80", Some("::1"), Some("80"), "80", false),
            ("::80", None, Some(""), "80", true),
        ];
        for (raw, ip, host, container, all) in cases {
            let raw = if raw == "8080" { "8080:80" } else { raw };
            let p = PublishSpec::parse(raw).unwrap();
            assert_eq!(p.host_ip.as_deref(), ip, "{raw}");
            assert_eq!(p.host_port.as_deref(), host, "{raw}");
            assert_eq!(p.container_port, container);
            assert_eq!(p.binds_all_interfaces(), all, "{raw}");
        }
        assert!(PublishSpec::parse("a:b").is_err());
        let n = Node::from_json_value(&json!([8080, "3000", {"x": 1}]));
        let mut e = ErrorSink::new();
        let p = parse_app_port(&n, &mut e);
        assert_eq!(p.len(), 2);
        assert_eq!(e.len(), 1);
        let single = parse_app_port(&Node::from_json_value(&json!(8080)), &mut e);
        assert_eq!(single[0].value, AppPort::Port(8080));
    }

    #[test]
    fn port_keys() {
        assert_eq!(PortKey::parse("3000"), PortKey::Port(3000));
        assert_eq!(PortKey::parse("40000-55000"), PortKey::Range(40000, 55000));
        assert_eq!(PortKey::parse(".+"), PortKey::Pattern(".+".into()));
    }
}
