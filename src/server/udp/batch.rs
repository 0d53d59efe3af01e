//! A thread's batch buffers and the two system calls on them: up to
//! [`BATCH`] datagrams received in one `recvmmsg`, each into its own slot,
//! and the replies sent from those slots in one `sendmmsg` per run of one
//! source address.

use std::cell::RefCell;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg,
    sendmmsg,
};
use tokio::net::UdpSocket;

use super::counts::{Counts, Dropped};
use crate::Endpoint;

/// Datagrams received (and replies sent) per system call, as the C server
/// the issue measured against does.
pub(super) const BATCH: usize = 64;

/// Bytes per datagram slot: larger than any UDP payload, so nothing is
/// truncated on the way in, and room for any reply that is sent at all. The
/// 4 MiB of slots are allocated zeroed and untouched, so only pages a
/// datagram was written to become resident (64-byte datagrams: one page per
/// slot in use).
pub(super) const SLOT: usize = 64 * 1024;

/// One received datagram, while its batch is being answered.
#[derive(Clone, Copy, Debug)]
pub(super) struct Datagram {
    /// The slot it was received into (and its reply is sent from).
    pub(super) slot: usize,
    /// Its source, where the reply goes (with its IPv6 scope).
    pub(super) source: SocketAddr,
    /// Its length, and then its reply's, in its slot.
    pub(super) len: usize,
    /// The local address it was sent to (on a wildcard socket; `None`
    /// otherwise).
    pub(super) to: Option<IpAddr>,
    /// The address and interface to answer from (on a wildcard socket, for a
    /// unicast destination; `None`: the kernel's choice).
    pub(super) reply_from: Option<(IpAddr, u32)>,
}

/// A thread's batch buffers: the slots, the system calls' headers, and what
/// the last receive brought. One per thread, shared by every UDP socket
/// served there, as the connections share one read buffer: a batch is
/// received, transformed and answered with no `.await` in between. (One per
/// socket would also not be `Send`: the headers hold raw pointers.)
pub(super) struct Batch {
    /// [`BATCH`] slots of [`SLOT`] bytes.
    pub(super) slots: Box<[u8]>,
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
    pub(super) datagrams: Vec<Datagram>,
}

thread_local! {
    /// This thread's batch, made on first use.
    static BATCH_BUFFERS: RefCell<Option<Batch>> = const { RefCell::new(None) };
}

/// Runs `f` on this thread's batch buffers, made on first use.
pub(super) fn with_batch<T>(f: impl FnOnce(&mut Batch) -> T) -> T {
    BATCH_BUFFERS.with_borrow_mut(|batch| f(batch.get_or_insert_with(Batch::new)))
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
    pub(super) fn receive(
        &mut self,
        socket: &UdpSocket,
        ipv6: bool,
        wildcard: bool,
    ) -> io::Result<usize> {
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

    /// Sends the replies of the datagrams `indices` of the batch, all from
    /// the address and interface `from` (the kernel's choice if `None`), in
    /// one `sendmmsg` where the socket takes them all. A reply the socket
    /// refuses is dropped and counted, and the rest still go; none is waited
    /// for.
    pub(super) fn send_run(
        &mut self,
        socket: &UdpSocket,
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
        } = self;
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
        let info = PacketInfo::new(from);
        let headers = match info {
            PacketInfo::Kernel => plain_headers,
            PacketInfo::V4(_) => from_v4_headers,
            PacketInfo::V6(_) => from_v6_headers,
        };
        let cmsg = info.control_message();
        let send = |sent: usize, headers: &mut MultiHeaders<SockaddrStorage>| {
            sendmmsg(
                socket.as_raw_fd(),
                headers,
                &slices[sent..],
                &addrs[sent..],
                cmsg.as_slice(),
                MsgFlags::MSG_DONTWAIT,
            )
            .map(Iterator::count)
        };
        let mut sent = 0;
        while sent < slices.len() {
            match send(sent, headers) {
                Ok(0) => break,
                Ok(n) => {
                    counts.sent += n as u64;
                    sent += n;
                }
                // The first reply of the rest was refused (a full buffer, an
                // unreachable network): drop it, go on with the others.
                Err(_) => {
                    let source = datagrams[indices[sent]].source;
                    counts.dropped(Dropped::SendFailed, endpoint, source);
                    sent += 1;
                }
            }
        }
        for &i in &indices[sent..] {
            counts.dropped(Dropped::SendFailed, endpoint, datagrams[i].source);
        }
    }
}

/// The whole slot of `datagram` among a batch's `slots`.
pub(super) fn slot_of<'a>(slots: &'a mut [u8], datagram: &Datagram) -> &'a mut [u8] {
    &mut slots[datagram.slot * SLOT..(datagram.slot + 1) * SLOT]
}

/// Where a run of replies is sent from: the packet-info a `sendmmsg`
/// carries, if any.
enum PacketInfo {
    /// The kernel's choice.
    Kernel,
    /// This IPv4 address.
    V4(libc::in_pktinfo),
    /// This IPv6 address and interface.
    V6(libc::in6_pktinfo),
}

impl PacketInfo {
    fn new(from: Option<(IpAddr, u32)>) -> PacketInfo {
        match from {
            None => PacketInfo::Kernel,
            Some((IpAddr::V4(ip), _)) => PacketInfo::V4(libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(ip).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            }),
            Some((IpAddr::V6(ip), interface)) => PacketInfo::V6(libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: ip.octets(),
                },
                ipi6_ifindex: interface,
            }),
        }
    }

    /// The control message that says so, if one is needed.
    fn control_message(&self) -> Option<ControlMessage<'_>> {
        match self {
            PacketInfo::Kernel => None,
            PacketInfo::V4(info) => Some(ControlMessage::Ipv4PacketInfo(info)),
            PacketInfo::V6(info) => Some(ControlMessage::Ipv6PacketInfo(info)),
        }
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
