//! Text from outside (a Unix peer's path, a socket path, a PROXY header, an
//! error message) made safe to print on one line: control characters are
//! escaped, so no client can end a log line early, forge the next one or
//! colour the operator's terminal.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Returns `text` with every control character escaped: `\n`, `\r`, `\t` as
/// themselves, every other one (ESC, DEL, C1 controls) as `\xNN` or `\u{NNNN}`.
/// Text without control characters is returned as it is, without copying.
///
/// ```
/// assert_eq!(upecho::escape::control("a\nb\x1b[31m"), "a\\nb\\x1b[31m");
/// assert_eq!(upecho::escape::control("/run/upecho.sock"), "/run/upecho.sock");
/// ```
pub fn control(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for ch in text.chars() {
        match ch {
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            ch if ch.is_control() && u32::from(ch) <= 0xff => {
                let _ = write!(escaped, "\\x{:02x}", u32::from(ch));
            }
            ch if ch.is_control() => {
                let _ = write!(escaped, "\\u{{{:04x}}}", u32::from(ch));
            }
            ch => escaped.push(ch),
        }
    }
    Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use super::control;

    #[test]
    fn every_control_character_is_escaped_and_nothing_else_changes() {
        assert_eq!(
            control("x\r\n\t\0\x7f\u{85}y"),
            "x\\r\\n\\t\\x00\\x7f\\x85y"
        );
        assert_eq!(control("straße ﬁ"), "straße ﬁ");
        assert!(matches!(control("plain"), std::borrow::Cow::Borrowed(_)));
    }
}
