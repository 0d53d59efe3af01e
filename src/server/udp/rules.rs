//! Which sources are never answered because answering them could start or
//! feed a loop between two always-answering services (reason `loop`).

use std::net::{IpAddr, SocketAddr};

/// Source ports of the classic services that answer anything: echo (7),
/// daytime (13), chargen (19), time (37).
const LOOP_PORTS: [u16; 4] = [7, 13, 19, 37];

/// Returns true if and only if answering a datagram from `source`, sent to
/// the local address `to` (when known), could start or feed a loop: a classic
/// always-answering service port, a broadcast, multicast or unspecified
/// address, or one of `own` (this server's UDP addresses). A wildcard one
/// (`0.0.0.0:P`, `[::]:P`) owns port P at every local address, since no other
/// socket can bind P beside it: a source at P that is a loopback address,
/// the address the datagram was sent to, or one of `local` (this host's
/// addresses, [`local_addresses`]) is the socket itself, if it can be: an
/// IPv4 wildcard sends only from IPv4 addresses, an IPv6 one from IPv6
/// addresses (and, dual-stack, from IPv4 ones seen as `::ffff:a.b.c.d`), so an
/// IPv6 client at `[::1]:P` is not taken for our `0.0.0.0:P`.
pub(super) fn is_loop_risk(
    source: SocketAddr,
    to: Option<IpAddr>,
    own: &[SocketAddr],
    local: &[IpAddr],
) -> bool {
    // An IPv4 source on a dual-stack socket (an inherited `[::]` one) comes as
    // `::ffff:a.b.c.d`: judged as the IPv4 address it is.
    let ip = source.ip().to_canonical();
    let to = to.map(|to| to.to_canonical());
    let odd_address = match ip {
        IpAddr::V4(v4) => v4.is_broadcast() || v4.is_multicast() || v4.is_unspecified(),
        IpAddr::V6(v6) => v6.is_multicast() || v6.is_unspecified(),
    };
    let is_local = || ip.is_loopback() || to == Some(ip) || local.contains(&ip);
    let could_send_from = |mine: &SocketAddr| match mine.ip() {
        IpAddr::V4(_) => ip.is_ipv4(),
        IpAddr::V6(_) => source.is_ipv6(),
    };
    let ours = own.iter().any(|mine| {
        let mine_ip = mine.ip().to_canonical();
        mine.port() == source.port()
            && (mine_ip == ip || (mine_ip.is_unspecified() && could_send_from(mine) && is_local()))
    });
    LOOP_PORTS.contains(&source.port()) || odd_address || ours
}

/// This host's addresses now (`getifaddrs`), for the wildcard part of the
/// rule; none if they cannot be read (loopback and destination addresses
/// are still recognised, and the echo rule stops any loop left).
pub(super) fn local_addresses() -> Vec<IpAddr> {
    let Ok(interfaces) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    interfaces
        .filter_map(|interface| {
            let address = interface.address?;
            if let Some(v4) = address.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                address.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn datagrams_from_always_answering_service_ports_are_loop_risks() {
        for port in [7, 13, 19, 37] {
            assert!(
                is_loop_risk(addr(&format!("192.0.2.1:{port}")), None, &[], &[]),
                "{port}"
            );
            assert!(
                is_loop_risk(addr(&format!("[2001:db8::1]:{port}")), None, &[], &[]),
                "{port}"
            );
        }
        for port in [8, 53, 1024, 40000] {
            assert!(
                !is_loop_risk(addr(&format!("192.0.2.1:{port}")), None, &[], &[]),
                "{port}"
            );
        }
    }

    #[test]
    fn broadcast_multicast_and_unspecified_sources_are_loop_risks() {
        for source in [
            "255.255.255.255:5000",
            "224.0.0.1:5000",
            "239.1.2.3:5000",
            "0.0.0.0:5000",
            "[ff02::1]:5000",
            "[::]:5000",
        ] {
            assert!(is_loop_risk(addr(source), None, &[], &[]), "{source}");
        }
        assert!(!is_loop_risk(addr("127.0.0.1:5000"), None, &[], &[]));
        assert!(!is_loop_risk(addr("[::1]:5000"), None, &[], &[]));
    }

    #[test]
    fn the_servers_own_addresses_are_loop_risks() {
        let own = [addr("127.0.0.1:9000"), addr("[::1]:9001")];
        assert!(is_loop_risk(addr("127.0.0.1:9000"), None, &own, &[]));
        assert!(is_loop_risk(addr("[::1]:9001"), None, &own, &[]));
        assert!(!is_loop_risk(addr("127.0.0.1:9001"), None, &own, &[]));
    }

    #[test]
    fn a_wildcard_listener_matches_its_port_at_the_address_a_datagram_came_to() {
        let own = [addr("0.0.0.0:9000"), addr("[::]:9001")];
        let to = |ip: &str| Some(ip.parse().unwrap());
        // Sent from our own wildcard socket to 127.0.0.5: its source is 127.0.0.5:9000.
        assert!(is_loop_risk(
            addr("127.0.0.5:9000"),
            to("127.0.0.5"),
            &own,
            &[]
        ));
        assert!(is_loop_risk(addr("[::1]:9001"), to("::1"), &own, &[]));
        // Another host, or another port, is a client.
        assert!(!is_loop_risk(
            addr("192.0.2.7:9000"),
            to("127.0.0.5"),
            &own,
            &[]
        ));
        assert!(!is_loop_risk(
            addr("127.0.0.5:9002"),
            to("127.0.0.5"),
            &own,
            &[]
        ));
    }

    #[test]
    fn a_wildcard_listener_owns_its_port_at_every_local_address() {
        let own = [addr("0.0.0.0:9000"), addr("[::]:9001")];
        let to = |ip: &str| Some(ip.parse().unwrap());
        let local: Vec<IpAddr> = vec!["192.0.2.2".parse().unwrap(), "fd00::2".parse().unwrap()];
        // Sent by the socket itself from another of its addresses.
        assert!(is_loop_risk(
            addr("127.0.0.1:9000"),
            to("127.0.0.5"),
            &own,
            &[]
        ));
        assert!(is_loop_risk(
            addr("192.0.2.2:9000"),
            to("127.0.0.5"),
            &own,
            &local
        ));
        assert!(is_loop_risk(
            addr("[fd00::2]:9001"),
            to("::1"),
            &own,
            &local
        ));
        assert!(is_loop_risk(
            addr("[::ffff:127.0.0.1]:9001"),
            to("::ffff:127.0.0.2"),
            &own,
            &[]
        ));
        // Another host at the same port is a client.
        assert!(!is_loop_risk(
            addr("192.0.2.7:9000"),
            to("192.0.2.2"),
            &own,
            &local
        ));
        assert!(!is_loop_risk(
            addr("[fd00::7]:9001"),
            to("fd00::2"),
            &own,
            &local
        ));
    }

    #[test]
    fn a_wildcard_listener_of_one_family_does_not_own_the_other_familys_port() {
        // 0.0.0.0:9000 cannot send from [::1]:9000, nor [::]:9001 (IPv6
        // only) from 127.0.0.1:9001: those are clients.
        let own = [addr("0.0.0.0:9000"), addr("[::]:9001")];
        let local: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        let to = |ip: &str| Some(ip.parse().unwrap());
        assert!(!is_loop_risk(addr("[::1]:9000"), to("::1"), &own, &local));
        assert!(!is_loop_risk(
            addr("127.0.0.1:9001"),
            to("127.0.0.1"),
            &own,
            &local
        ));
        // Each family still owns its own port.
        assert!(is_loop_risk(
            addr("127.0.0.1:9000"),
            to("127.0.0.1"),
            &own,
            &local
        ));
        assert!(is_loop_risk(addr("[::1]:9001"), to("::1"), &own, &local));
    }

    #[test]
    fn this_hosts_addresses_include_loopback() {
        let local = local_addresses();
        assert!(local.contains(&"127.0.0.1".parse().unwrap()), "{local:?}");
    }

    #[test]
    fn ipv4_sources_on_a_dual_stack_socket_are_judged_as_ipv4() {
        let own = [addr("[::]:9000")];
        for source in ["[::ffff:255.255.255.255]:5000", "[::ffff:224.0.0.1]:5000"] {
            assert!(is_loop_risk(addr(source), None, &[], &[]), "{source}");
        }
        let to = Some("::ffff:127.0.0.5".parse().unwrap());
        assert!(is_loop_risk(addr("[::ffff:127.0.0.5]:9000"), to, &own, &[]));
        assert!(!is_loop_risk(
            addr("[::ffff:127.0.0.5]:9001"),
            to,
            &own,
            &[]
        ));
    }
}
