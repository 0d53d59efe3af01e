//! How a text log line writes an event's message and fields: as
//! tracing-subscriber's default (`message key=value ...`), except that every
//! control character in a value is escaped (`\n`, `\x1b`). A value can carry
//! a client's bytes (a Unix peer's path, a PROXY header, an error message);
//! written raw, a newline in it would forge a whole log line and an escape
//! sequence would colour or rewrite the operator's terminal.
//!
//! JSON lines need nothing of this: JSON strings escape control characters.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

/// The text format's field formatter: [`tracing_subscriber`]'s layout with
/// control characters escaped.
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut visitor = Visitor {
            writer: &mut writer,
            result: Ok(()),
            first: true,
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

/// Writes each field it visits: the message as it is, others as `name=value`,
/// separated by spaces.
struct Visitor<'a, 'writer> {
    /// The line being written.
    writer: &'a mut Writer<'writer>,
    /// The first write error; once set, later fields are skipped.
    result: fmt::Result,
    /// True if and only if nothing was written yet (no separator needed).
    first: bool,
}

impl Visit for Visitor<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            // Quoted, as the default formatter writes a string field.
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // A `log` record bridged into tracing carries its origin as
        // `log.target`, `log.file`, ...: the default formatter leaves them
        // out, and so does this one.
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        let separator = if std::mem::take(&mut self.first) {
            ""
        } else {
            " "
        };
        self.result = if field.name() == "message" {
            write!(self.writer, "{separator}")
                .and_then(|()| write!(Escaping(self.writer), "{value:?}"))
        } else {
            // A raw identifier (`r#type`) is shown without its `r#`.
            let name = field.name();
            let name = name.strip_prefix("r#").unwrap_or(name);
            write!(self.writer, "{separator}{name}=")
                .and_then(|()| write!(Escaping(self.writer), "{value:?}"))
        };
    }
}

/// A writer that escapes control characters on the way through; text without
/// any is passed on without a copy.
struct Escaping<'a, 'writer>(&'a mut Writer<'writer>);

impl fmt::Write for Escaping<'_, '_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.0.write_str(&upecho::escape::control(text))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::EscapedFields;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn log_line(event: impl FnOnce()) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .fmt_fields(EscapedFields)
            .finish();
        tracing::subscriber::with_default(subscriber, event);
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn a_value_with_a_newline_and_an_escape_sequence_stays_on_one_line() {
        let peer = "/tmp/x\n2026-01-01T00:00:00Z  INFO server stopped\x1b[31m";
        let line = log_line(|| tracing::info!(%peer, bytes = 3, "connection opened"));
        assert_eq!(
            line,
            " INFO connection opened peer=/tmp/x\\n2026-01-01T00:00:00Z  INFO server stopped\\x1b[31m bytes=3\n"
        );
    }

    #[test]
    fn a_raw_identifier_is_shown_without_r_hash_and_log_origin_fields_are_left_out() {
        let line = log_line(|| {
            tracing::info!(r#type = "tcp", log.target = "rustls", "listening");
        });
        assert_eq!(line, " INFO listening type=\"tcp\"\n");
    }

    #[test]
    fn a_message_and_string_fields_are_written_as_the_default_formatter_writes_them() {
        let line = log_line(|| tracing::warn!(path = "/run/a b", "cannot {}", "bind"));
        assert_eq!(line, " WARN cannot bind path=\"/run/a b\"\n");
    }
}
