//! Text from outside (a Unix peer's path, a socket path, a PROXY header, an
//! error message) made safe to print on one line: control characters are
//! escaped, so no client can end a log line early, forge the next one or
//! colour the operator's terminal. So are the characters that are invisible
//! or turn text around (U+2028 LINE SEPARATOR, U+202E RIGHT-TO-LEFT
//! OVERRIDE, ...): a viewer may break a line there or show it reversed.
//!
//! A backslash is left as it is: the escape makes a line safe to show, not
//! reversible, and escaping it would double every backslash of a value that
//! is already written escaped (a `Debug` string).

use std::borrow::Cow;
use std::fmt::Write as _;

/// Returns `text` with every control character escaped: `\n`, `\r`, `\t` as
/// themselves, every other one (ESC, DEL, C1 controls) as `\xNN`, and the
/// invisible and direction characters (see the module) as `\u{NNNN}`. Text
/// without any is returned as it is, without copying.
///
/// ```
/// assert_eq!(upecho::escape::control("a\nb\x1b[31m"), "a\\nb\\x1b[31m");
/// assert_eq!(upecho::escape::control("/run/upecho.sock"), "/run/upecho.sock");
/// ```
pub fn control(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
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
            ch if needs_escape(ch) => {
                let _ = write!(escaped, "\\u{{{:04x}}}", u32::from(ch));
            }
            ch => escaped.push(ch),
        }
    }
    Cow::Owned(escaped)
}

/// True for a control character, and for the format and separator
/// characters that change how a line is shown: zero-width ones (U+200B to
/// U+200F), the line and paragraph separators and the embedding and override
/// controls (U+2028 to U+202E), word joiner to the isolates (U+2060 to
/// U+2069), ALM (U+061C) and the byte order mark (U+FEFF).
fn needs_escape(ch: char) -> bool {
    ch.is_control()
        || matches!(
            ch,
            '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}'
        )
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

    #[test]
    fn separators_and_direction_overrides_are_escaped_but_backslashes_are_not() {
        assert_eq!(
            control("a\u{2028}b\u{202e}c\u{200b}d\u{feff}"),
            "a\\u{2028}b\\u{202e}c\\u{200b}d\\u{feff}"
        );
        assert_eq!(control("C:\\x \\n"), "C:\\x \\n");
    }
}
