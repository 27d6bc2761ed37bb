//! Unit tests of the port service: visibility, epochs, every admission refusal, revocation,
//! the pages of `ports_list`.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::guest::ports::page::{MAX_LISTENERS_PER_PORT, MAX_PAGE_PORTS};
use crate::wire::grant::{GrantClaims, GrantPrincipal};
use base64::Engine as _;

const NOW: i64 = 1_800_000_000;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(NOW).unwrap()
}

fn codespace() -> CodespaceIdentity {
    CodespaceIdentity {
        owner: Some("mona".into()),
        organization: Some("octo".into()),
        repository: None,
        ..Default::default()
    }
}

fn key() -> GrantKey {
    GrantKey::new(&[7; 32]).unwrap()
}

fn service() -> Arc<PortsService> {
    let s = PortsService::new(PortsConfig::default(), None);
    let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let mut f = Map::new();
    f.insert("key".into(), b64.into());
    s.put_grant_key(f).unwrap();
    s
}

fn principal(login: &str, orgs: &[&str]) -> Option<GrantPrincipal> {
    Some(GrantPrincipal {
        login: login.into(),
        organizations: orgs.iter().map(|s| (*s).to_owned()).collect(),
        authenticated_at: NOW - 60,
    })
}

fn hello(port: u16, claims: GrantClaims, k: &GrantKey) -> ForwardHello {
    ForwardHello {
        port,
        grant: serde_json::to_value(k.sign(claims)).unwrap(),
        ticket: None,
    }
}

fn claims(s: &PortsService, port: u16, who: Option<GrantPrincipal>) -> GrantClaims {
    let epoch = s.lock().registry.get(port).map_or(0, |st| st.epoch);
    GrantClaims {
        principal: who,
        port,
        epoch,
        expires_at: NOW + 3600,
    }
}

fn refusal(s: &Arc<PortsService>, h: ForwardHello) -> &'static str {
    s.admit(Some(&h), &codespace(), now()).unwrap_err().reason()
}

/// The first page of `ports_list`.
fn list(s: &PortsService) -> Value {
    s.list(&codespace(), PageRequest::default())
}

fn set(s: &PortsService, port: u16, v: Visibility) -> Result<Value, ServiceError> {
    s.set_visibility(i64::from(port), v, &codespace(), now())
}

#[test]
fn new_ports_are_private_and_every_change_bumps_the_epoch() {
    let s = service();
    s.port_opened(3000);
    let l = list(&s);
    assert_eq!(l["ports"][0]["visibility"], "private");
    let e1 = l["ports"][0]["epoch"].as_u64().unwrap();
    let r = set(&s, 3000, Visibility::Public).unwrap();
    assert!(r["epoch"].as_u64().unwrap() > e1);
    s.port_closed(3000);
    assert_eq!(list(&s)["ports"], json!([]));
    s.port_opened(3000);
    let l = list(&s);
    assert_eq!(l["ports"][0]["visibility"], "private", "removal forgets");
    assert!(l["ports"][0]["epoch"].as_u64().unwrap() > r["epoch"].as_u64().unwrap());
    assert_eq!(
        s.status(),
        json!({"ports": 1, "connections": 0, "grant_key": true, "forward_tickets": 0})
    );
    let e = set(&s, 4000, Visibility::Org).unwrap_err();
    assert!(e.to_string().starts_with("unknown-port"), "{e}");
    let e = set(&s, 22, Visibility::Public).unwrap_err();
    assert!(e.to_string().starts_with("owner-only"), "{e}");
    let e = s
        .set_visibility(70000, Visibility::Org, &codespace(), now())
        .unwrap_err();
    assert!(e.to_string().starts_with("invalid-port"), "{e}");
}

#[test]
fn a_port_stays_until_its_last_listener_closes() {
    let s = service();
    s.listener_opened(3000, 1, json!({"address": "127.0.0.1"}));
    s.listener_opened(3000, 2, json!({"address": "::1"}));
    assert_eq!(
        list(&s)["ports"][0]["listeners"].as_array().unwrap().len(),
        2
    );
    s.listener_closed(3000, 1);
    assert_eq!(list(&s)["ports"].as_array().unwrap().len(), 1);
    s.listener_closed(3000, 2);
    assert_eq!(list(&s)["ports"], json!([]));
}

#[test]
fn the_organization_policy_limits_choices() {
    let config = PortsConfig {
        allowed: codespace_policy::ports::AllowedVisibilities::from_list(&[Visibility::Org]),
        ..PortsConfig::default()
    };
    let s = PortsService::new(config, None);
    s.port_opened(3000);
    let e = set(&s, 3000, Visibility::Public).unwrap_err();
    assert!(e.to_string().starts_with("visibility-not-allowed"), "{e}");
    set(&s, 3000, Visibility::Org).unwrap();
    assert_eq!(list(&s)["allowed_visibilities"], json!(["private", "org"]));
}

#[test]
fn every_refusal_has_its_reason() {
    let s = service();
    s.port_opened(3000);
    s.port_opened(4000);
    s.port_opened(22);
    let k = key();
    let ok = claims(&s, 3000, principal("mona", &[]));

    assert!(s
        .admit(Some(&hello(3000, ok.clone(), &k)), &codespace(), now())
        .is_ok());
    assert_eq!(
        s.admit(None, &codespace(), now()).unwrap_err().reason(),
        "malformed"
    );
    let forged = hello(3000, ok.clone(), &GrantKey::new(&[8; 32]).unwrap());
    assert_eq!(refusal(&s, forged), "forged");
    let mut bad = hello(3000, ok.clone(), &k);
    bad.grant["port"] = json!("x");
    assert_eq!(refusal(&s, bad), "malformed-grant");
    assert_eq!(refusal(&s, hello(4000, ok.clone(), &k)), "wrong-port");
    let expired = GrantClaims {
        expires_at: NOW,
        ..ok.clone()
    };
    assert_eq!(refusal(&s, hello(3000, expired, &k)), "expired");
    let long = GrantClaims {
        expires_at: NOW - 60 + 3 * 3600 + 1,
        ..ok.clone()
    };
    assert_eq!(refusal(&s, hello(3000, long, &k)), "lifetime-too-long");
    assert_eq!(
        refusal(
            &s,
            hello(5000, claims(&s, 5000, principal("mona", &[])), &k)
        ),
        "no-such-port"
    );
    let stale = GrantClaims {
        epoch: ok.epoch - 1,
        ..ok.clone()
    };
    assert_eq!(refusal(&s, hello(3000, stale, &k)), "stale-epoch");
    // Private: only the owner; no principal at all needs authentication.
    assert_eq!(
        refusal(
            &s,
            hello(3000, claims(&s, 3000, principal("hubot", &["octo"])), &k)
        ),
        "not-owner"
    );
    assert_eq!(
        refusal(&s, hello(3000, claims(&s, 3000, None), &k)),
        "authentication-required"
    );
    // Org: members and the owner.
    set(&s, 3000, Visibility::Org).unwrap();
    assert_eq!(
        refusal(
            &s,
            hello(3000, claims(&s, 3000, principal("hubot", &["other"])), &k)
        ),
        "not-organization-member"
    );
    assert!(s
        .admit(
            Some(&hello(
                3000,
                claims(&s, 3000, principal("hubot", &["OCTO"])),
                &k
            )),
            &codespace(),
            now()
        )
        .is_ok());
    // Public: no principal needed.
    set(&s, 3000, Visibility::Public).unwrap();
    assert!(s
        .admit(
            Some(&hello(3000, claims(&s, 3000, None), &k)),
            &codespace(),
            now()
        )
        .is_ok());
    // Owner-only: the creator only, whoever else asks.
    assert_eq!(
        refusal(
            &s,
            hello(22, claims(&s, 22, principal("hubot", &["octo"])), &k)
        ),
        "owner-only"
    );
    assert_eq!(
        refusal(&s, hello(22, claims(&s, 22, None), &k)),
        "owner-only"
    );
    assert!(s
        .admit(
            Some(&hello(22, claims(&s, 22, principal("MONA", &[])), &k)),
            &codespace(),
            now()
        )
        .is_ok());
    // An authentication older than 3 hours.
    let old = GrantClaims {
        principal: Some(GrantPrincipal {
            authenticated_at: NOW - 3 * 3600,
            ..principal("mona", &[]).unwrap()
        }),
        expires_at: NOW + 1,
        ..claims(&s, 4000, None)
    };
    assert_eq!(refusal(&s, hello(4000, old, &k)), "lifetime-too-long");
    let no_key = PortsService::new(PortsConfig::default(), None);
    no_key.port_opened(3000);
    assert_eq!(
        no_key
            .admit(Some(&hello(3000, ok, &k)), &codespace(), now())
            .unwrap_err()
            .reason(),
        "no-grant-key"
    );
}

#[test]
fn limits_count_live_connections() {
    let config = PortsConfig {
        max_connections_per_port: 2,
        max_connections_total: 3,
        ..PortsConfig::default()
    };
    let s = PortsService::new(config, None);
    let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let mut f = Map::new();
    f.insert("key".into(), b64.into());
    s.put_grant_key(f).unwrap();
    s.port_opened(3000);
    s.port_opened(4000);
    let k = key();
    let admit = |port| {
        s.admit(
            Some(&hello(port, claims(&s, port, principal("mona", &[])), &k)),
            &codespace(),
            now(),
        )
    };
    let a = admit(3000).unwrap();
    let _b = admit(3000).unwrap();
    assert_eq!(admit(3000).unwrap_err().reason(), "too-many-connections");
    let _c = admit(4000).unwrap();
    assert_eq!(
        admit(4000).unwrap_err(),
        ForwardRefusal::TooManyConnections {
            scope: "total",
            limit: 3
        }
    );
    drop(a);
    assert!(admit(3000).is_ok(), "a finished connection frees its place");
}

#[test]
fn tightening_and_removal_revoke_exactly_the_connections_no_longer_allowed() {
    let s = service();
    s.port_opened(3000);
    set(&s, 3000, Visibility::Public).unwrap();
    let k = key();
    let admit = |who| {
        s.admit(
            Some(&hello(3000, claims(&s, 3000, who), &k)),
            &codespace(),
            now(),
        )
        .unwrap()
    };
    let mut owner = admit(principal("mona", &[]));
    let mut member = admit(principal("hubot", &["octo"]));
    let mut anonymous = admit(None);
    let r = set(&s, 3000, Visibility::Org).unwrap();
    assert_eq!(r["revoked"], 1);
    assert!(anonymous.revoked.try_recv().is_ok());
    assert!(member.revoked.try_recv().is_err());
    let r = set(&s, 3000, Visibility::Private).unwrap();
    assert_eq!(r["revoked"], 1);
    assert!(member.revoked.try_recv().is_ok());
    assert!(owner.revoked.try_recv().is_err());
    assert_eq!(s.port_closed(3000), 1);
    assert!(owner.revoked.try_recv().is_ok());
}

#[test]
fn grant_key_put_refuses_bad_keys_without_echoing_them() {
    let s = PortsService::new(PortsConfig::default(), None);
    let mut f = Map::new();
    f.insert("key".into(), "c2hvcnQ=".into());
    let e = s.put_grant_key(f).unwrap_err().to_string();
    assert!(e.contains("at least 32") && !e.contains("c2hvcnQ"), "{e}");
    let mut f = Map::new();
    f.insert("key".into(), json!(5));
    assert!(s.put_grant_key(f).is_err());
    assert_eq!(list(&s)["grant_key"], false);
}

#[test]
fn forward_tickets_are_issued_in_bounded_batches_and_redeemed_once() {
    let s = PortsService::new(PortsConfig::default(), None);
    let mut f = Map::new();
    f.insert("count".into(), json!(3));
    let answer = s
        .handle(
            PortsRequest::ForwardTickets,
            f,
            &CodespaceIdentity::default(),
        )
        .unwrap();
    let tickets = answer["tickets"].as_array().unwrap();
    assert_eq!(tickets.len(), 3);
    let t = crate::wire::ticket::ForwardTicket::from_base64(tickets[0].as_str().unwrap()).unwrap();
    assert!(s.tickets().redeem(&t));
    assert!(!s.tickets().redeem(&t));
    for bad in [
        json!({"count": 0}),
        json!({"count": 257}),
        json!({"count": "3"}),
        json!({}),
        json!({"count": 1, "x": 1}),
    ] {
        let err = s
            .handle(
                PortsRequest::ForwardTickets,
                bad.as_object().cloned().unwrap(),
                &CodespaceIdentity::default(),
            )
            .unwrap_err();
        assert!(
            matches!(err, ServiceError::InvalidArgument(_)),
            "{bad}: {err}"
        );
    }
}

/// The `ports_list` answer to `fields`, through the request handler.
fn list_request(s: &PortsService, fields: Value) -> Result<Value, ServiceError> {
    s.handle(
        PortsRequest::List,
        fields.as_object().cloned().unwrap(),
        &codespace(),
    )
}

fn ports_of(page: &Value) -> Vec<u64> {
    page["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect()
}

#[test]
fn ports_list_walks_every_port_once_in_bounded_pages() {
    let s = service();
    let all: Vec<u16> = (1..=u16::try_from(2 * MAX_PAGE_PORTS + 3).unwrap())
        .map(|i| i * 7)
        .collect();
    for &p in &all {
        s.port_opened(p);
    }
    // An old host sends no cursor: the first page, told there is more.
    let first = list_request(&s, json!({})).unwrap();
    assert_eq!(ports_of(&first).len(), MAX_PAGE_PORTS);
    assert_eq!(first["more"], true);
    assert_eq!(first["next_after"], u64::from(all[MAX_PAGE_PORTS - 1]));
    assert_eq!(
        first["grant_key"], true,
        "every page carries the service's facts"
    );

    let mut seen = Vec::new();
    let mut after = json!(null);
    let mut pages = 0;
    loop {
        let page = list_request(&s, json!({"after": after, "limit": 100})).unwrap();
        pages += 1;
        let ports = ports_of(&page);
        assert!(ports.len() <= 100);
        seen.extend(ports);
        if page["more"] == false {
            assert_eq!(page["next_after"], Value::Null);
            break;
        }
        after = page["next_after"].clone();
        assert!(pages < 100, "the walk does not end");
    }
    let want: Vec<u64> = all.iter().copied().map(u64::from).collect();
    assert_eq!(seen, want, "every port once, in order");
    assert_eq!(pages, want.len().div_ceil(100));

    // A cursor between ports, past the last one, and at the end of the range.
    assert_eq!(
        ports_of(&list_request(&s, json!({"after": 8, "limit": 2})).unwrap()),
        [14, 21]
    );
    let last = list_request(&s, json!({"after": all[all.len() - 1]})).unwrap();
    assert_eq!(
        (ports_of(&last).len(), last["more"].clone()),
        (0, json!(false))
    );
    assert!(ports_of(&list_request(&s, json!({"after": 65535})).unwrap()).is_empty());
}

#[test]
fn ports_list_bounds_the_listeners_of_one_port() {
    let s = service();
    for inode in 0..100 {
        s.listener_opened(3000, inode, json!({"inode": inode}));
    }
    s.listener_opened(4000, 1, json!({"process": "x".repeat(10_000)}));
    let page = list(&s);
    let p = &page["ports"][0];
    assert_eq!(
        p["listeners"].as_array().unwrap().len(),
        MAX_LISTENERS_PER_PORT
    );
    assert_eq!(p["listeners_omitted"], 100 - MAX_LISTENERS_PER_PORT);
    assert_eq!(
        page["ports"][1]["listeners"],
        json!([{"details_omitted": true}])
    );
    assert_eq!(page["ports"][1]["listeners_omitted"], 0);
}

#[test]
fn ports_list_refuses_a_bad_cursor_or_limit_by_name() {
    let s = service();
    s.port_opened(3000);
    for (fields, name) in [
        (json!({"after": "3000"}), "`after`"),
        (json!({"after": 70000}), "`after`"),
        (json!({"limit": 0}), "`limit`"),
        (json!({"limit": true}), "`limit`"),
        (json!({"page": 2}), "`page`"),
    ] {
        let e = list_request(&s, fields.clone()).unwrap_err();
        assert!(
            matches!(&e, ServiceError::InvalidArgument(m) if m.contains(name)),
            "{fields}: {e}"
        );
    }
}

fn socket(port: u16, addr: &str, uid: u32, inode: u64, network: Network) -> ListeningSocket {
    let addr: IpAddr = addr.parse().unwrap();
    ListeningSocket {
        port,
        addr,
        scope: BindScope::of(addr),
        uid,
        inode,
        pid: None,
        process: None,
        network,
    }
}

fn target(s: &PortsService, port: u16) -> (Network, Vec<String>) {
    let t = s.target_of(port).unwrap();
    (t.network, t.addrs.iter().map(IpAddr::to_string).collect())
}

#[test]
fn one_owners_ipv4_and_ipv6_sockets_are_one_port_at_their_own_addresses() {
    let s = service();
    s.socket_opened(&socket(3000, "::1", 1000, 1, Network::Agent));
    let e = set(&s, 3000, Visibility::Public).unwrap()["epoch"].clone();
    assert_eq!(
        s.socket_opened(&socket(3000, "0.0.0.0", 1000, 2, Network::Agent)),
        0
    );
    let p = &list(&s)["ports"][0];
    assert_eq!(p["visibility"], "public", "{p}");
    assert_eq!(p["epoch"], e, "{p}");
    assert_eq!(
        target(&s, 3000),
        (Network::Agent, vec!["127.0.0.1".into(), "::1".into()])
    );
    // Bound to one other address: not on loopback, nothing to connect to.
    s.socket_opened(&socket(4000, "10.0.0.5", 1000, 3, Network::Agent));
    assert_eq!(target(&s, 4000), (Network::Agent, vec![]));
    assert_eq!(s.target_of(5000), None);
}

#[test]
fn another_uids_socket_is_a_new_identity_and_never_a_target() {
    let s = service();
    s.socket_opened(&socket(3000, "::1", 1000, 1, Network::Agent));
    set(&s, 3000, Visibility::Public).unwrap();
    let public_epoch = list(&s)["ports"][0]["epoch"].as_u64().unwrap();
    let k = key();
    let mut visitor = s
        .admit(
            Some(&hello(3000, claims(&s, 3000, None), &k)),
            &codespace(),
            now(),
        )
        .unwrap();
    assert_eq!(
        s.socket_opened(&socket(3000, "127.0.0.1", 65534, 2, Network::Agent)),
        1
    );
    assert!(visitor.revoked.try_recv().is_ok());
    let p = &list(&s)["ports"][0];
    assert_eq!(p["visibility"], "private", "{p}");
    assert!(p["epoch"].as_u64().unwrap() > public_epoch, "{p}");
    assert_eq!(target(&s, 3000), (Network::Agent, vec!["::1".into()]));
    // The same uid in the restricted network is another server too.
    set(&s, 3000, Visibility::Public).unwrap();
    s.socket_opened(&socket(3000, "127.0.0.2", 1000, 3, Network::Restricted));
    assert_eq!(list(&s)["ports"][0]["visibility"], "private");
    // The owner's listener goes: the port stays, with nothing to connect to.
    s.listener_closed(3000, 1);
    assert_eq!(target(&s, 3000), (Network::Agent, vec![]));
    // All gone: forgotten with its owner; the next first listener owns it.
    s.listener_closed(3000, 2);
    s.listener_closed(3000, 3);
    s.socket_opened(&socket(3000, "127.0.0.1", 65534, 4, Network::Agent));
    assert_eq!(target(&s, 3000), (Network::Agent, vec!["127.0.0.1".into()]));
}

#[test]
fn a_restricted_owners_port_is_reached_in_the_restricted_network() {
    let s = service();
    s.socket_opened(&socket(3000, "127.0.0.1", 64999, 1, Network::Restricted));
    assert_eq!(
        target(&s, 3000),
        (Network::Restricted, vec!["127.0.0.1".into()])
    );
}
