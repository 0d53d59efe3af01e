//! UDP: every datagram is answered with one datagram to its source, or
//! dropped and counted. Data flow: [`serve()`] (one loop per socket and thread)
//! -> [`batch`] receives up to 64 datagrams (`recvmmsg`) -> [`answer`]
//! transforms each in its slot and applies the drop rules ([`rules`],
//! [`echoes`], shared by the threads through [`common`]) ->
//! [`batch`] sends the replies (`sendmmsg`); [`counts`] keeps the tally.
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
//!   echo/chargen storm (`loop`); so would the 65th echo in a row of our own
//!   reply from one source, the sign of another echo server ([`echoes`]);
//! - a reply the socket cannot take at once is not waited for: one slow or
//!   unreachable peer must never hold up the others (`send_failed`).
//!
//! A socket bound to a wildcard address (`0.0.0.0`, `[::]`) learns each
//! datagram's destination address (`IP_PKTINFO`) and answers from it: a client
//! that sent to 127.0.0.2 must get its reply from 127.0.0.2, or a connected
//! client socket would never see it. It also owns its port at every local
//! address (no other socket can bind that port beside it), so a datagram
//! from any of them at that port is its own and dropped (`loop`).

mod answer;
mod batch;
mod common;
mod counts;
mod echoes;
mod rules;
mod serve;

pub(crate) use common::Common;
pub(crate) use serve::serve;
