//! One batch's decisions: each datagram is transformed in its slot, or
//! dropped for a reason of [`counts::Dropped`](super::counts::Dropped); the
//! replies then go out in as few `sendmmsg` calls as there are runs of one
//! source address.

use std::net::SocketAddr;

use tokio::net::UdpSocket;

use super::batch::{Batch, Datagram, slot_of};
use super::counts::{Counts, Dropped};
use super::rules::is_loop_risk;
use crate::endpoint::MAX_DATAGRAM;
use crate::{Endpoint, Transform};

/// Transforms each datagram of the batch in its slot and sends the replies
/// that may be sent, in as few `sendmmsg` calls as there are runs of one
/// source address (one, unless the socket is wildcard-bound and datagrams came
/// to several of its addresses).
pub(super) fn answer(
    socket: &UdpSocket,
    batch: &mut Batch,
    transform: Transform,
    own: &[SocketAddr],
    endpoint: &Endpoint,
    counts: &mut Counts,
) {
    counts.received += batch.datagrams.len() as u64;
    // Replies to send, as indices into `datagrams`.
    let mut replies: Vec<usize> = Vec::with_capacity(batch.datagrams.len());
    let Batch {
        slots, datagrams, ..
    } = batch;
    for (index, datagram) in datagrams.iter_mut().enumerate() {
        let verdict = if datagram.len > MAX_DATAGRAM {
            Err(Dropped::TooLarge)
        } else if is_loop_risk(datagram.source, datagram.to, own) {
            Err(Dropped::Loop)
        } else {
            transform_in_slot(slots, datagram, transform)
        };
        match verdict {
            Ok(()) => replies.push(index),
            Err(why) => counts.dropped(why, endpoint, datagram.source),
        }
    }
    send_replies(socket, batch, &replies, endpoint, counts);
}

/// Transforms the datagram in its slot and sets its length to the reply's;
/// a reply too large to send is an error.
fn transform_in_slot(
    slots: &mut [u8],
    datagram: &mut Datagram,
    transform: Transform,
) -> Result<(), Dropped> {
    let slot = slot_of(slots, datagram);
    let base = slot.as_ptr();
    let reply = transform.apply(&mut slot[..datagram.len]);
    let len = reply.len();
    if len > MAX_DATAGRAM {
        return Err(Dropped::TooLarge);
    }
    if !std::ptr::eq(reply.as_ptr(), base) {
        // Grown (unicode): back into the slot, which has room for it.
        let grown = reply.to_vec();
        drop(reply);
        slot[..len].copy_from_slice(&grown);
    }
    datagram.len = len;
    Ok(())
}

/// Sends the replies of the datagrams `replies`, one `sendmmsg` per run of
/// replies from one address.
fn send_replies(
    socket: &UdpSocket,
    batch: &mut Batch,
    replies: &[usize],
    endpoint: &Endpoint,
    counts: &mut Counts,
) {
    let mut start = 0;
    while start < replies.len() {
        let from = batch.datagrams[replies[start]].reply_from;
        let run = replies[start..]
            .iter()
            .take_while(|&&i| batch.datagrams[i].reply_from == from)
            .count();
        batch.send_run(socket, &replies[start..start + run], from, endpoint, counts);
        start += run;
    }
}
