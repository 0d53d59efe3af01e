//! One UDP socket: datagrams in batches (`recvmmsg`), each transformed in its
//! own slot, replies out in batches (`sendmmsg`), until shutdown. Not a
//! connection: every datagram is answered with one datagram to its source,
//! or dropped and counted.
//!
//! Why batches: a pingpong client keeps one datagram in flight, but fifty of
//! them keep fifty queued; one system call per batch each way, rather than two
//! per datagram, is what makes the difference in CPU per datagram
//! (docs/BENCHMARKS.md). Why `nix` and not `quinn-udp`: quinn-udp batches
//! receives, but sends one `sendmsg` per destination (GSO only merges
//! segments to one peer), and an echo server answers many peers; it also
//! forbids fragmentation, which would refuse a 65,507-byte reply on any path
//! with a smaller MTU than loopback's. nix wraps `recvmmsg`/`sendmmsg` safely.
//!
//! Why datagrams are dropped rather than answered:
//! - a reply over 65,507 bytes (a unicode datagram that grew) cannot be sent
//!   whole, and a truncated reply would be a wrong one (`too_large`);
//! - a datagram from the echo, daytime, chargen or time port (7, 13, 19, 37),
//!   from a broadcast or multicast address, or from one of this server's own
//!   addresses would start or feed a loop between two such services: the
//!   echo/chargen storm (`loop`);
//! - a reply the socket cannot take at once is not waited for: one slow or
//!   unreachable peer must never hold up the others (`send_failed`).
//!
//! A socket bound to a wildcard address (`0.0.0.0`, `[::]`) learns each
//! datagram's destination address (`IP_PKTINFO`) and answers from it: a client
//! that sent to 127.0.0.2 must get its reply from 127.0.0.2, or a connected
//! client socket would never see it.

use std::cell::RefCell;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg,
    sendmmsg, setsockopt, sockopt,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::metrics::DatagramMetrics;
use super::state::Shared;
use crate::{Endpoint, Transform};

use crate::endpoint::MAX_DATAGRAM;

/// Datagrams received (and replies sent) per system call, as the C server
/// the issue measured against does.
const BATCH: usize = 64;

/// Bytes per datagram slot: larger than any UDP payload, so nothing is
/// truncated on the way in, and room for any reply that is sent at all. The
/// 4 MiB of slots are allocated zeroed and untouched, so only pages a
/// datagram was written to become resident (64-byte datagrams: one page per
/// slot in use).
const SLOT: usize = 64 * 1024;

/// Source ports of the classic services that answer anything: echo (7),
/// daytime (13), chargen (19), time (37).
const LOOP_PORTS: [u16; 4] = [7, 13, 19, 37];

/// Why a datagram got no reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// The reply would exceed [`MAX_DATAGRAM`].
    TooLarge,
    /// Answering could feed a loop between two services.
    Loop,
    /// The socket did not take the reply.
    SendFailed,
}

impl Dropped {
    /// The name used in logs (and the metrics of the operations issue).
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Dropped::TooLarge => "too_large",
            Dropped::Loop => "loop",
            Dropped::SendFailed => "send_failed",
        }
    }
}

/// Returns true if and only if answering a datagram from `source`, sent to
/// the local address `to` (when known), could start or feed a loop: a classic
/// always-answering service port, a broadcast, multicast or unspecified
/// address, or one of `own` (this server's UDP addresses; a wildcard one
/// matches a source on its port at the address the datagram was sent to,
/// which is where a local sender's datagrams come from).
pub(crate) fn is_loop_risk(source: SocketAddr, to: Option<IpAddr>, own: &[SocketAddr]) -> bool {
    // An IPv4 source on a dual-stack socket (an inherited `[::]` one) comes as
    // `::ffff:a.b.c.d`: judged as the IPv4 address it is.
    let ip = source.ip().to_canonical();
    let to = to.map(|to| to.to_canonical());
    let odd_address = match ip {
        IpAddr::V4(v4) => v4.is_broadcast() || v4.is_multicast() || v4.is_unspecified(),
        IpAddr::V6(v6) => v6.is_multicast() || v6.is_unspecified(),
    };
    let ours = own.iter().any(|mine| {
        let mine_ip = mine.ip().to_canonical();
        mine.port() == source.port()
            && (mine_ip == ip || (mine_ip.is_unspecified() && to == Some(ip)))
    });
    LOOP_PORTS.contains(&source.port()) || odd_address || ours
}

/// Datagrams answered and dropped on one socket (on one thread).
#[derive(Debug, Default)]
struct Counts {
    /// Datagrams received.
    received: u64,
    /// Replies sent.
    sent: u64,
    /// Dropped, by reason: too large, loop, send failed.
    dropped: [u64; 3],
}

impl Counts {
    fn dropped(&mut self, why: Dropped, endpoint: &Endpoint, peer: SocketAddr) {
        self.dropped[why as usize] += 1;
        tracing::debug!(listener = %endpoint, %peer, reason = why.reason(), "datagram dropped");
    }
}

/// One received datagram, while its batch is being answered.
#[derive(Clone, Copy, Debug)]
struct Datagram {
    /// The slot it was received into (and its reply is sent from).
    slot: usize,
    /// Its source, where the reply goes (with its IPv6 scope).
    source: SocketAddr,
    /// Its length, and then its reply's, in its slot.
    len: usize,
    /// The local address it was sent to (on a wildcard socket; `None`
    /// otherwise).
    to: Option<IpAddr>,
    /// The address and interface to answer from (on a wildcard socket, for a
    /// unicast destination; `None`: the kernel's choice).
    reply_from: Option<(IpAddr, u32)>,
}

/// A thread's batch buffers: the slots, the system calls' headers, and what
/// the last receive brought. One per thread, shared by every UDP socket
/// served there, as the connections share one read buffer: a batch is
/// received, transformed and answered with no `.await` in between. (One per
/// socket would also not be `Send`: the headers hold raw pointers.)
struct Batch {
    /// [`BATCH`] slots of [`SLOT`] bytes.
    slots: Box<[u8]>,
    /// Headers for `recvmmsg` on IPv4 and IPv6 sockets, without control
    /// messages. Reused: the kernel shrinks each header's address length to
    /// the address it wrote, which is the same for every datagram of one
    /// family, and nix does not reset it (nor the control length, which is
    /// why wildcard sockets, which receive a control message, get fresh
    /// headers for each call: nix pull request 2813).
    received_v4_headers: MultiHeaders<SockaddrStorage>,
    received_v6_headers: MultiHeaders<SockaddrStorage>,
    /// Headers for `sendmmsg` without control messages.
    plain_headers: MultiHeaders<SockaddrStorage>,
    /// Headers for `sendmmsg` with one IPv4 packet-info message.
    from_v4_headers: MultiHeaders<SockaddrStorage>,
    /// Headers for `sendmmsg` with one IPv6 packet-info message.
    from_v6_headers: MultiHeaders<SockaddrStorage>,
    /// The datagrams of the current batch, in slot order.
    datagrams: Vec<Datagram>,
}

thread_local! {
    /// This thread's batch, made on first use.
    static BATCH_BUFFERS: RefCell<Option<Batch>> = const { RefCell::new(None) };
}

impl Batch {
    fn new() -> Batch {
        Batch {
            slots: vec![0u8; BATCH * SLOT].into_boxed_slice(),
            received_v4_headers: MultiHeaders::preallocate(BATCH, None),
            received_v6_headers: MultiHeaders::preallocate(BATCH, None),
            plain_headers: MultiHeaders::preallocate(BATCH, None),
            from_v4_headers: MultiHeaders::preallocate(
                BATCH,
                Some(nix::cmsg_space!(libc::in_pktinfo)),
            ),
            from_v6_headers: MultiHeaders::preallocate(
                BATCH,
                Some(nix::cmsg_space!(libc::in6_pktinfo)),
            ),
            datagrams: Vec::with_capacity(BATCH),
        }
    }

    /// Receives up to [`BATCH`] datagrams without waiting: `WouldBlock` when
    /// there are none. `wildcard`: the socket reports destinations.
    fn receive(&mut self, socket: &UdpSocket, ipv6: bool, wildcard: bool) -> io::Result<usize> {
        self.datagrams.clear();
        let mut fresh;
        let headers = match (wildcard, ipv6) {
            (true, _) => {
                fresh = MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(libc::in6_pktinfo)));
                &mut fresh
            }
            (false, false) => &mut self.received_v4_headers,
            (false, true) => &mut self.received_v6_headers,
        };
        let mut slices: Vec<[IoSliceMut<'_>; 1]> = self
            .slots
            .chunks_exact_mut(SLOT)
            .map(|slot| [IoSliceMut::new(slot)])
            .collect();
        let received = recvmmsg(
            socket.as_raw_fd(),
            headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )?;
        for (slot, message) in received.enumerate() {
            // Not an IP source (impossible on a UDP socket): no reply.
            let Some(source) = message.address.as_ref().and_then(std_addr) else {
                continue;
            };
            let (to, reply_from) = if wildcard {
                message
                    .cmsgs()
                    .ok()
                    .and_then(|mut cmsgs| cmsgs.find_map(destination))
                    .map_or((None, None), |(to, from)| (Some(to), from))
            } else {
                (None, None)
            };
            // A datagram cut short (impossible with 64 KiB slots) counts as too large.
            let len = if message.flags.contains(MsgFlags::MSG_TRUNC) {
                usize::MAX
            } else {
                message.bytes
            };
            self.datagrams.push(Datagram {
                slot,
                source,
                len,
                to,
                reply_from,
            });
        }
        Ok(self.datagrams.len())
    }
}

/// The destination, and the address and interface to answer from, from a
/// packet-info message. A multicast destination cannot be a reply's source,
/// and an IPv6 link-local one needs its interface, so both are kept.
fn destination(cmsg: ControlMessageOwned) -> Option<(IpAddr, Option<(IpAddr, u32)>)> {
    match cmsg {
        ControlMessageOwned::Ipv4PacketInfo(info) => {
            let to = Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr));
            // The kernel's choice of local address for a reply.
            let from = Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr));
            let from = (!from.is_unspecified()).then_some((IpAddr::V4(from), 0));
            Some((IpAddr::V4(to), from))
        }
        ControlMessageOwned::Ipv6PacketInfo(info) => {
            let to = Ipv6Addr::from(info.ipi6_addr.s6_addr);
            let from = (!to.is_multicast()).then_some((IpAddr::V6(to), info.ipi6_ifindex));
            Some((IpAddr::V6(to), from))
        }
        _ => None,
    }
}

fn std_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        Some(SocketAddr::from((v4.ip(), v4.port())))
    } else {
        addr.as_sockaddr_in6().map(|v6| {
            SocketAddr::V6(std::net::SocketAddrV6::new(
                v6.ip(),
                v6.port(),
                v6.flowinfo(),
                v6.scope_id(),
            ))
        })
    }
}

/// Serves `socket` until shutdown begins. `own` lists every UDP address of
/// the server, for the loop rule. `open` is held while the socket is open.
pub(crate) async fn serve(
    socket: UdpSocket,
    endpoint: Endpoint,
    own: Arc<[SocketAddr]>,
    open: TaskTrackerToken,
    shared: Shared,
) {
    let drain = shared.signal.drain_token().clone();
    let transform = shared.settings.transform;
    let local = socket.local_addr().ok();
    let wildcard = local.is_some_and(|addr| addr.ip().is_unspecified());
    let ipv6 = local.is_some_and(|addr| addr.is_ipv6());
    if wildcard && let Err(err) = report_destinations(&socket) {
        // Replies then go out from the kernel's choice of address.
        tracing::warn!(listener = %endpoint, error = %crate::error::plain(&io::Error::from(err)),
            "cannot learn datagrams' destinations");
    }
    let mut counts = Counts::default();
    // What of `counts` the metrics already have.
    let mut folded = Counts::default();
    let counters = shared.metrics.datagram(&endpoint);
    loop {
        tokio::select! {
            biased;
            () = drain.cancelled() => break,
            ready = socket.readable() => if ready.is_err() { break },
        }
        let served = socket.try_io(Interest::READABLE, || {
            BATCH_BUFFERS.with_borrow_mut(|batch| {
                let batch = batch.get_or_insert_with(Batch::new);
                batch.receive(&socket, ipv6, wildcard)?;
                answer(&socket, batch, transform, &own, &endpoint, &mut counts);
                Ok(())
            })
        });
        // Once per batch, not per datagram.
        fold(&counters, &counts, &mut folded);
        match served {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => {
                // An error about one datagram (a queued ICMP error); the socket goes on.
                tracing::debug!(listener = %endpoint, error = %crate::error::plain(&err), "receive failed");
            }
        }
    }
    drop(open);
    report(&endpoint, &counts);
}

/// Adds to the metrics what `counts` gained since `folded`, then records
/// that they have it.
fn fold(counters: &DatagramMetrics, counts: &Counts, folded: &mut Counts) {
    let reasons = [Dropped::TooLarge, Dropped::Loop, Dropped::SendFailed];
    let dropped = reasons.map(|why| {
        let at = why as usize;
        (why.reason(), counts.dropped[at] - folded.dropped[at])
    });
    counters.add(
        counts.received - folded.received,
        counts.sent - folded.sent,
        dropped,
    );
    folded.received = counts.received;
    folded.sent = counts.sent;
    folded.dropped = counts.dropped;
}

/// Asks a wildcard-bound socket to report each datagram's destination address.
fn report_destinations(socket: &UdpSocket) -> nix::Result<()> {
    if socket.local_addr().is_ok_and(|addr| addr.is_ipv6()) {
        setsockopt(&socket.as_fd(), sockopt::Ipv6RecvPacketInfo, &true)
    } else {
        setsockopt(&socket.as_fd(), sockopt::Ipv4PacketInfo, &true)
    }
}

/// Transforms each datagram of the batch in its slot and sends the replies
/// that may be sent, in as few `sendmmsg` calls as there are runs of one
/// source address (one, unless the socket is wildcard-bound and datagrams came
/// to several of its addresses).
fn answer(
    socket: &UdpSocket,
    batch: &mut Batch,
    transform: Transform,
    own: &[SocketAddr],
    endpoint: &Endpoint,
    counts: &mut Counts,
) {
    counts.received += batch.datagrams.len() as u64;
    let Batch {
        slots, datagrams, ..
    } = batch;
    // Replies to send, as indices into `datagrams`.
    let mut replies: Vec<usize> = Vec::with_capacity(datagrams.len());
    for (index, datagram) in datagrams.iter_mut().enumerate() {
        let slot = &mut slots[datagram.slot * SLOT..(datagram.slot + 1) * SLOT];
        let source = datagram.source;
        if datagram.len > MAX_DATAGRAM {
            counts.dropped(Dropped::TooLarge, endpoint, source);
        } else if is_loop_risk(source, datagram.to, own) {
            counts.dropped(Dropped::Loop, endpoint, source);
        } else {
            let base = slot.as_ptr();
            let reply = transform.apply(&mut slot[..datagram.len]);
            let len = reply.len();
            if len > MAX_DATAGRAM {
                counts.dropped(Dropped::TooLarge, endpoint, source);
                continue;
            }
            if !std::ptr::eq(reply.as_ptr(), base) {
                // Grown (unicode): back into the slot, which has room for it.
                let grown = reply.to_vec();
                drop(reply);
                slot[..len].copy_from_slice(&grown);
            }
            datagram.len = len;
            replies.push(index);
        }
    }
    let mut start = 0;
    while start < replies.len() {
        let from = batch.datagrams[replies[start]].reply_from;
        let run = replies[start..]
            .iter()
            .take_while(|&&i| batch.datagrams[i].reply_from == from)
            .count();
        send_run(
            socket,
            batch,
            &replies[start..start + run],
            from,
            endpoint,
            counts,
        );
        start += run;
    }
}
/// Sends the replies of the datagrams `indices` of the batch, all from the
/// address and interface `from` (the kernel's choice if `None`), in one
/// `sendmmsg` where the socket
/// takes them all. A reply the socket refuses is dropped and counted, and the
/// rest still go; none is waited for.
fn send_run(
    socket: &UdpSocket,
    batch: &mut Batch,
    indices: &[usize],
    from: Option<(IpAddr, u32)>,
    endpoint: &Endpoint,
    counts: &mut Counts,
) {
    let Batch {
        slots,
        plain_headers,
        from_v4_headers,
        from_v6_headers,
        datagrams,
        ..
    } = batch;
    let slices: Vec<[IoSlice<'_>; 1]> = indices
        .iter()
        .map(|&i| {
            let at = datagrams[i].slot * SLOT;
            [IoSlice::new(&slots[at..at + datagrams[i].len])]
        })
        .collect();
    let addrs: Vec<Option<SockaddrStorage>> = indices
        .iter()
        .map(|&i| Some(SockaddrStorage::from(datagrams[i].source)))
        .collect();
    let v4_info;
    let v6_info;
    let (headers, cmsgs): (&mut MultiHeaders<SockaddrStorage>, Vec<ControlMessage<'_>>) = match from
    {
        None => (plain_headers, Vec::new()),
        Some((IpAddr::V4(ip), _)) => {
            v4_info = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(ip).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            (
                from_v4_headers,
                vec![ControlMessage::Ipv4PacketInfo(&v4_info)],
            )
        }
        Some((IpAddr::V6(ip), interface)) => {
            v6_info = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: ip.octets(),
                },
                ipi6_ifindex: interface,
            };
            (
                from_v6_headers,
                vec![ControlMessage::Ipv6PacketInfo(&v6_info)],
            )
        }
    };
    let mut sent = 0;
    while sent < slices.len() {
        let result = sendmmsg(
            socket.as_raw_fd(),
            headers,
            &slices[sent..],
            &addrs[sent..],
            &cmsgs,
            MsgFlags::MSG_DONTWAIT,
        );
        match result {
            Ok(results) => {
                let n = results.count();
                counts.sent += n as u64;
                sent += n;
                if n == 0 {
                    break;
                }
            }
            // The first reply of the rest was refused (a full buffer, an
            // unreachable network): drop it, go on with the others.
            Err(_) => {
                counts.dropped(
                    Dropped::SendFailed,
                    endpoint,
                    datagrams[indices[sent]].source,
                );
                sent += 1;
            }
        }
    }
    for &i in &indices[sent..] {
        counts.dropped(Dropped::SendFailed, endpoint, datagrams[i].source);
    }
}

/// Logs what one socket did, once, when it stops (if it dropped anything).
fn report(endpoint: &Endpoint, counts: &Counts) {
    let [too_large, looped, send_failed] = counts.dropped;
    if too_large + looped + send_failed > 0 {
        tracing::info!(listener = %endpoint, received = counts.received, sent = counts.sent,
            too_large, r#loop = looped, send_failed, "datagrams dropped");
    }
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
                is_loop_risk(addr(&format!("192.0.2.1:{port}")), None, &[]),
                "{port}"
            );
            assert!(
                is_loop_risk(addr(&format!("[2001:db8::1]:{port}")), None, &[]),
                "{port}"
            );
        }
        for port in [8, 53, 1024, 40000] {
            assert!(
                !is_loop_risk(addr(&format!("192.0.2.1:{port}")), None, &[]),
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
            assert!(is_loop_risk(addr(source), None, &[]), "{source}");
        }
        assert!(!is_loop_risk(addr("127.0.0.1:5000"), None, &[]));
        assert!(!is_loop_risk(addr("[::1]:5000"), None, &[]));
    }

    #[test]
    fn the_servers_own_addresses_are_loop_risks() {
        let own = [addr("127.0.0.1:9000"), addr("[::1]:9001")];
        assert!(is_loop_risk(addr("127.0.0.1:9000"), None, &own));
        assert!(is_loop_risk(addr("[::1]:9001"), None, &own));
        assert!(!is_loop_risk(addr("127.0.0.1:9001"), None, &own));
    }

    #[test]
    fn a_wildcard_listener_matches_its_port_at_the_address_a_datagram_came_to() {
        let own = [addr("0.0.0.0:9000"), addr("[::]:9001")];
        let to = |ip: &str| Some(ip.parse().unwrap());
        // Sent from our own wildcard socket to 127.0.0.5: its source is 127.0.0.5:9000.
        assert!(is_loop_risk(addr("127.0.0.5:9000"), to("127.0.0.5"), &own));
        assert!(is_loop_risk(addr("[::1]:9001"), to("::1"), &own));
        // Another host, or another port, is a client.
        assert!(!is_loop_risk(addr("192.0.2.7:9000"), to("127.0.0.5"), &own));
        assert!(!is_loop_risk(addr("127.0.0.5:9002"), to("127.0.0.5"), &own));
    }

    #[test]
    fn ipv4_sources_on_a_dual_stack_socket_are_judged_as_ipv4() {
        let own = [addr("[::]:9000")];
        for source in ["[::ffff:255.255.255.255]:5000", "[::ffff:224.0.0.1]:5000"] {
            assert!(is_loop_risk(addr(source), None, &[]), "{source}");
        }
        let to = Some("::ffff:127.0.0.5".parse().unwrap());
        assert!(is_loop_risk(addr("[::ffff:127.0.0.5]:9000"), to, &own));
        assert!(!is_loop_risk(addr("[::ffff:127.0.0.5]:9001"), to, &own));
    }
}
