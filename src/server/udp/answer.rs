//! One batch's decisions: each datagram is transformed in its slot, or
//! dropped for a reason of [`counts::Dropped`](super::counts::Dropped); the
//! replies then go out in as few `sendmmsg` calls as there are runs of one
//! source address.

use std::net::{IpAddr, SocketAddr};

use tokio::net::UdpSocket;

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use super::batch::{BATCH, Batch, Datagram, slot_of};
use super::common::Common;
use super::counts::{Counts, Dropped};
use super::echoes::Fingerprint;
use super::rules::is_loop_risk;
use crate::access::Live;
use crate::access::udp_rate::UdpRate;
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
    let mut prints = [(None, Fingerprint::EMPTY); BATCH];
    let Batch {
        slots, datagrams, ..
    } = batch;
    // Once a batch: SIGHUP may have swapped them since the last one.
    let rules = context.access.current();
    let rules = (!rules.is_open()).then_some(&*rules);
    for (index, datagram) in datagrams.iter_mut().enumerate() {
        let verdict = if rules.is_some_and(|rules| !rules.permits(datagram.source.ip())) {
            Err(Dropped::Denied)
        } else if datagram.len > MAX_DATAGRAM {
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
        let mut rate = context
            .udp_rate
            .map(|rate| rate.lock().unwrap_or_else(PoisonError::into_inner));
        let now = Instant::now();
        replies.retain(|&index| {
            let (source, (payload, reply)) = (datagrams[index].source, prints[index]);
            let why = if echoes.is_loop(source, payload, reply) {
                Dropped::Loop
            } else if rate
                .as_mut()
                .is_some_and(|rate| !rate.take(source.ip(), now))
            {
                Dropped::RateLimited
            } else {
                return true;
            };
            counts.dropped(why, context.endpoint, source);
            false
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
    /// Who may be answered.
    pub(super) access: &'a Live,
    /// The buckets of `--udp-rate`, shared by every UDP socket; `None`
    /// without a limit.
    pub(super) udp_rate: Option<&'a Mutex<UdpRate>>,
}

/// Transforms the datagram in its slot and sets its length to the reply's;
/// returns the fingerprints of the payload (if it could be one of our
/// replies at all) and of the reply. A reply too large to send is an error.
///
/// At most one hash per datagram, except a unicode payload without ASCII
/// lower case (two): no reply of ours holds a byte `a`..=`z` (`ascii` and
/// `unicode` upper-case them all), so a payload with one cannot be an echo
/// and needs no fingerprint, and a payload without one comes back from
/// `ascii` (like any payload from `none`) unchanged, so its fingerprint is
/// its reply's. Measured with `peers/udp-instructions.sh` (callgrind, user
/// space, per datagram answered, lower-case payloads): 64 B datagrams cost
/// 4,355 instructions before the echo rule and 3,542 now; 32 KiB ones
/// 12,073 before, 50,661 with two hashes each, 31,027 with the one hash of
/// the reply, which the rule cannot do without (the hash runs at about 0.6
/// instructions a byte).
fn transform_in_slot(
    slots: &mut [u8],
    datagram: &mut Datagram,
    transform: Transform,
) -> Result<(Option<Fingerprint>, Fingerprint), Dropped> {
    let slot = slot_of(slots, datagram);
    let payload = could_be_our_reply(transform, &slot[..datagram.len])
        .then(|| Fingerprint::of(&slot[..datagram.len]));
    let unchanged = payload.filter(|_| transform != Transform::Unicode);
    let base = slot.as_ptr();
    let reply = transform.apply(&mut slot[..datagram.len]);
    let len = reply.len();
    if len > MAX_DATAGRAM {
        return Err(Dropped::TooLarge);
    }
    let printed = unchanged.unwrap_or_else(|| Fingerprint::of(&reply));
    if !std::ptr::eq(reply.as_ptr(), base) {
        // Grown (unicode): back into the slot, which has room for it.
        let grown = reply.to_vec();
        drop(reply);
        slot[..len].copy_from_slice(&grown);
    }
    datagram.len = len;
    Ok((payload, printed))
}

/// False if `payload` cannot be a reply `transform` made: one with an ASCII
/// lower-case letter, unless the transform is `none`.
fn could_be_our_reply(transform: Transform, payload: &[u8]) -> bool {
    transform == Transform::None || !payload.iter().any(u8::is_ascii_lowercase)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every character there is, then bytes of every kind, valid or not.
    fn everything() -> Vec<u8> {
        let mut text: Vec<u8> = (0..=char::MAX as u32)
            .filter_map(char::from_u32)
            .collect::<String>()
            .into_bytes();
        let mut rng = fastrand::Rng::with_seed(7);
        text.extend((0..1 << 20).map(|_| rng.u8(..)));
        text
    }

    #[test]
    fn no_reply_holds_an_ascii_lower_case_letter() {
        // What lets a payload with one go unfingerprinted.
        for transform in [Transform::Ascii, Transform::Unicode] {
            let mut input = everything();
            let reply = transform.apply(&mut input);
            assert!(!reply.iter().any(u8::is_ascii_lowercase), "{transform}");
        }
    }

    #[test]
    fn a_payload_that_could_be_our_reply_comes_back_unchanged_except_under_unicode() {
        // What lets its fingerprint stand for its reply's.
        let samples: [&[u8]; 5] = [b"PING", b"ping", "ÉCOLE".as_bytes(), "é".as_bytes(), b""];
        for transform in [Transform::None, Transform::Ascii] {
            for &sample in &samples {
                if could_be_our_reply(transform, sample) {
                    let mut copy = sample.to_vec();
                    assert_eq!(&*transform.apply(&mut copy), sample, "{transform}");
                }
            }
        }
        assert!(!could_be_our_reply(Transform::Ascii, b"PINg"));
        assert!(could_be_our_reply(Transform::None, b"ping"));
        assert!(could_be_our_reply(Transform::Unicode, "é".as_bytes()));
    }
}
