//! One batch's decisions: each datagram is transformed in its slot, or
//! dropped for a reason of [`counts::Dropped`](super::counts::Dropped); the
//! replies then go out in as few `sendmmsg` calls as there are runs of one
//! source address.

use std::net::{IpAddr, SocketAddr};

use tokio::net::UdpSocket;

use super::batch::{BATCH, Batch, Datagram, slot_of};
use super::common::Common;
use super::counts::{Counts, Dropped};
use super::echoes::Fingerprint;
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
    common: &Common,
    context: &Context<'_>,
    counts: &mut Counts,
) {
    counts.received += batch.datagrams.len() as u64;
    // Replies to send, as indices into `datagrams`, and the fingerprints of
    // each datagram's payload and reply.
    let mut replies: Vec<usize> = Vec::with_capacity(batch.datagrams.len());
    let mut prints = [(Fingerprint::EMPTY, Fingerprint::EMPTY); BATCH];
    let Batch {
        slots, datagrams, ..
    } = batch;
    for (index, datagram) in datagrams.iter_mut().enumerate() {
        let verdict = if datagram.len > MAX_DATAGRAM {
            Err(Dropped::TooLarge)
        } else if is_loop_risk(datagram.source, datagram.to, context.own, context.local) {
            Err(Dropped::Loop)
        } else {
            transform_in_slot(slots, datagram, context.transform)
        };
        match verdict {
            Ok(payload_and_reply) => {
                prints[index] = payload_and_reply;
                replies.push(index);
            }
            Err(why) => counts.dropped(why, context.endpoint, datagram.source),
        }
    }
    if !replies.is_empty() {
        let mut echoes = common.echoes();
        replies.retain(|&index| {
            let (source, (payload, reply)) = (datagrams[index].source, prints[index]);
            let looped = echoes.is_loop(source, payload, reply);
            if looped {
                counts.dropped(Dropped::Loop, context.endpoint, source);
            }
            !looped
        });
    }
    send_replies(socket, batch, &replies, context.endpoint, counts);
}

/// What answering needs to know of the socket, the same for every batch.
#[derive(Clone, Copy, Debug)]
pub(super) struct Context<'a> {
    /// The transform of every reply.
    pub(super) transform: Transform,
    /// Every UDP address of the server.
    pub(super) own: &'a [SocketAddr],
    /// This host's addresses, for a wildcard socket (empty otherwise).
    pub(super) local: &'a [IpAddr],
    /// This socket's address, for logs.
    pub(super) endpoint: &'a Endpoint,
}

/// Transforms the datagram in its slot and sets its length to the reply's;
/// returns the fingerprints of the payload and the reply. A reply too large
/// to send is an error.
fn transform_in_slot(
    slots: &mut [u8],
    datagram: &mut Datagram,
    transform: Transform,
) -> Result<(Fingerprint, Fingerprint), Dropped> {
    let slot = slot_of(slots, datagram);
    let payload = Fingerprint::of(&slot[..datagram.len]);
    let base = slot.as_ptr();
    let reply = transform.apply(&mut slot[..datagram.len]);
    let len = reply.len();
    if len > MAX_DATAGRAM {
        return Err(Dropped::TooLarge);
    }
    let printed = Fingerprint::of(&reply);
    if !std::ptr::eq(reply.as_ptr(), base) {
        // Grown (unicode): back into the slot, which has room for it.
        let grown = reply.to_vec();
        drop(reply);
        slot[..len].copy_from_slice(&grown);
    }
    datagram.len = len;
    Ok((payload, printed))
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
