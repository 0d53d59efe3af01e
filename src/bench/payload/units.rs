//! The `unicode` reply model: how many reply bytes a stream or a request
//! cut mid-character is owed so far (the server holds back a character the
//! socket cut), which bytes of a cut character come back unchanged at the end
//! of the stream, and how many units' replies are whole. The length-keeping
//! transforms take the short way out of each (see [`Payload::grows`]).

use super::Payload;

/// Where a `unicode` stream connection stands in the units it writes and
/// receives: what the unit being written owes so far, and whose reply is
/// arriving. Left at its default (and unused) for `ascii` and `none`, whose
/// owed bytes are simply the bytes written.
#[derive(Clone, Copy, Debug, Default)]
pub struct Units {
    /// Offset, in the unit being written, of its first character not yet
    /// owed back: the one the socket took only part of, or the end of what
    /// was written.
    owed_from: usize,
    /// Reply bytes owed so far for the unit being written.
    owed: u64,
    /// The unit (index in the pattern) whose reply is being received.
    echoing: usize,
    /// Offset in the connection's reply stream where that reply ends.
    echo_end: u64,
}

impl Payload {
    /// What the first `written` bytes of `request` (a message's) are owed
    /// once the stream ends: the reply bytes of its whole characters, and the
    /// bytes of a character it cuts, which the server returns unchanged at
    /// the end of the stream. For `ascii` and `none`, `written` bytes and
    /// nothing cut.
    pub fn partial_reply<'a>(&self, request: &'a [u8], written: usize) -> (u64, &'a [u8]) {
        if !self.grows() {
            return (written as u64, &[]);
        }
        let (reply, whole) = self.reply_of_whole_chars(&request[..written]);
        (reply as u64, &request[whole..written])
    }

    /// The unit bookkeeping of a `unicode` stream that starts at `start`.
    pub fn stream_units(&self, start: usize) -> Units {
        if !self.grows() {
            return Units::default();
        }
        let unit = start / self.size;
        Units {
            echoing: unit,
            echo_end: self.unit_reply_len(unit) as u64,
            ..Units::default()
        }
    }

    /// `unicode` streams: the reply bytes newly owed now that a stream that
    /// started at `start` has written `written` bytes, the last write among
    /// them. A write never crosses a unit's end, so it belongs to the unit of
    /// its last byte. Once a unit is whole its reply is owed, from the table;
    /// before, the reply to its whole characters so far: the server holds
    /// back a character cut by the end of what it read.
    ///
    /// Cost: a table load per whole write; a write cut short also transforms
    /// the bytes from the last character not yet owed to the cut, so every
    /// byte of a unit is counted at most once more (plus 3 of a cut
    /// character) however the socket splits it.
    pub fn text_owed(&self, start: usize, written: u64, units: &mut Units) -> u64 {
        let in_unit = (written % self.size as u64) as usize;
        let unit = self.unit_at(start, written - 1);
        if in_unit == 0 {
            let owed = self.unit_reply_len(unit) as u64 - units.owed;
            units.owed = 0;
            units.owed_from = 0;
            return owed;
        }
        let base = unit * self.size;
        let (reply, whole) =
            self.reply_of_whole_chars(&self.sent[base + units.owed_from..base + in_unit]);
        units.owed_from += whole;
        units.owed += reply as u64;
        reply as u64
    }

    /// `unicode` streams: the bytes of a character the writes so far cut,
    /// which the server holds and returns unchanged at the end of the stream
    /// (empty if they end on a character boundary).
    pub fn text_cut(&self, start: usize, written: u64, units: &Units) -> &[u8] {
        let in_unit = (written % self.size as u64) as usize;
        if !self.grows() || in_unit == 0 {
            return &[];
        }
        let base = self.unit_at(start, written - 1) * self.size;
        &self.sent[base + units.owed_from..base + in_unit]
    }

    /// `unicode` streams: how many units' replies are now whole, `got` reply
    /// bytes having arrived.
    pub fn text_echoed(&self, got: u64, units: &mut Units) -> u64 {
        let mut whole = 0;
        // Every unit's reply has at least one byte, so this ends.
        while got >= units.echo_end {
            whole += 1;
            units.echoing = (units.echoing + 1) % self.units();
            units.echo_end += self.unit_reply_len(units.echoing) as u64;
        }
        whole
    }

    /// Returns true if and only if a stream's reply, `got` bytes of it
    /// received, stands inside a unit's reply: some of that unit's reply
    /// came, not all of it. (`units` is only read for `unicode`.)
    pub fn echo_inside_unit(&self, got: u64, units: &Units) -> bool {
        if !self.grows() {
            return !got.is_multiple_of(self.size as u64);
        }
        got > units.echo_end - self.unit_reply_len(units.echoing) as u64
    }

    /// `unicode`: units in the pattern.
    pub(super) fn units(&self) -> usize {
        self.replies.len() - 1
    }

    /// `unicode`: the length of the reply to unit `unit`.
    fn unit_reply_len(&self, unit: usize) -> usize {
        (self.replies[unit + 1] - self.replies[unit]) as usize
    }

    /// `unicode`: the unit holding byte `offset` of a stream that started at
    /// `start` (a unit's start).
    fn unit_at(&self, start: usize, offset: u64) -> usize {
        let size = self.size as u64;
        ((start as u64 / size + offset / size) % self.units() as u64) as usize
    }

    /// The length of the transform of the whole characters of `text`, and
    /// how many bytes they are (the rest is a character cut off at the end).
    /// The server's own code decides both, in pieces on the stack.
    fn reply_of_whole_chars(&self, text: &[u8]) -> (usize, usize) {
        let mut transform = self.transform.stream();
        let mut scratch = [0u8; 4096];
        let mut reply = 0;
        for part in text.chunks(scratch.len()) {
            let scratch = &mut scratch[..part.len()];
            scratch.copy_from_slice(part);
            reply += transform.process(scratch).len();
        }
        let cut = transform.finish().len();
        (reply, text.len() - cut)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Payload, test_unicode as unicode};
    use crate::Transform;
    use crate::bench::Mode;

    /// The specification of a reply: the server's transform of a whole message.
    fn transformed(request: &[u8]) -> Vec<u8> {
        Transform::Unicode.apply(&mut request.to_vec()).to_vec()
    }

    #[test]
    fn unicode_pingpong_owes_the_whole_characters_of_a_cut_request_and_returns_the_cut_one() {
        let payload = Payload::new(&unicode(Mode::PingPong, 256));
        let message = payload.message(3);
        let reply = &payload.expected[payload.messages[3].reply..];
        for written in 0..=256 {
            let (due, cut) = payload.partial_reply(message.request, written);
            // What a server returns for the cut request followed by the end
            // of the stream.
            let returned = transformed(&message.request[..written]);
            assert_eq!(
                returned,
                [&reply[..due as usize], cut].concat(),
                "{written}"
            );
            assert!(cut.len() <= 3);
        }
    }

    #[test]
    fn unicode_stream_owes_the_transform_of_the_whole_characters_at_every_cut() {
        let size = 100;
        let payload = Payload::new(&unicode(Mode::Stream, size));
        for index in [0, 5] {
            let start = payload.stream_start(index);
            assert_eq!(start % size, 0);
            let mut units = payload.stream_units(start);
            // The server's side: one stream transform over every byte sent.
            let mut server = Transform::Unicode.stream();
            let mut replied = Vec::new();
            let mut written = 0u64;
            let mut owed = 0u64;
            let mut echoed = 0u64;
            let mut rng = fastrand::Rng::with_seed(index as u64);
            // Across the pattern's end, with writes cut at random bytes.
            while written < 2 * payload.ring as u64 + 3 * size as u64 {
                let write = payload.stream_write(start, written);
                let n = rng.usize(1..=write.len());
                replied.extend_from_slice(&server.process(&mut write[..n].to_vec()));
                written += n as u64;
                owed += payload.text_owed(start, written, &mut units);
                assert_eq!(owed, replied.len() as u64, "owed after {written} bytes");
                let cut = payload.text_cut(start, written, &units);
                assert_eq!(cut, server.clone().finish(), "cut after {written} bytes");
                echoed += payload.text_echoed(owed, &mut units);
                assert_eq!(echoed, written / size as u64);
            }
            let mut expected = payload.stream_expected(start);
            assert!(expected.check(&replied).is_ok());
        }
    }

    #[test]
    fn a_reply_stream_is_inside_a_unit_between_its_boundaries() {
        let ascii = Payload::new(&crate::bench::payload::test_config(Mode::Stream, 1000));
        let start = ascii.stream_units(0);
        assert!(!ascii.echo_inside_unit(0, &start));
        assert!(ascii.echo_inside_unit(1, &start));
        assert!(ascii.echo_inside_unit(999, &start));
        assert!(!ascii.echo_inside_unit(2000, &start));
        let text = Payload::new(&unicode(Mode::Stream, 100));
        let mut units = text.stream_units(0);
        let first = text.unit_reply_len(0) as u64;
        assert!(!text.echo_inside_unit(0, &units));
        assert!(text.echo_inside_unit(first - 1, &units));
        assert_eq!(text.text_echoed(first, &mut units), 1);
        assert!(!text.echo_inside_unit(first, &units));
        assert!(text.echo_inside_unit(first + 1, &units));
    }
}
