//! The library's error type: what failed, naming the address or flag, and why in
//! plain words. The binary prints it once as `error: {err}`.

use std::io;

/// Everything the library can fail with.
///
/// Messages follow the contract: what failed, naming the address, then the cause
/// in plain lower-case words with no `(os error N)` suffix, so that
/// `format!("error: {err}")` is the complete line a user sees.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An address given as `host:port` was malformed.
    #[error("invalid address '{input}': {reason}")]
    Address {
        /// The text as the user gave it.
        input: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A host name did not resolve to any address. The message names the host
    /// alone (`cannot resolve nosuch.invalid: no such host`): the resolver is
    /// asked about the name, not the port.
    #[error("cannot resolve {host}: {}", plain(cause))]
    Resolve {
        /// The host name as given, e.g. `nosuch.invalid`.
        host: String,
        /// The endpoint it was resolved for, e.g. `tcp nosuch.invalid:80`.
        endpoint: String,
        /// What the resolver said, in plain words: `no such host` (kind
        /// `NotFound`), `temporary failure in name resolution`, ...
        cause: io::Error,
    },
    /// A listener could not be created, bound or put into listening state.
    #[error("cannot listen on {endpoint}: {}", plain(cause))]
    Listen {
        /// The endpoint, e.g. `tcp 127.0.0.1:8080`.
        endpoint: String,
        /// The operating system's reason.
        cause: io::Error,
    },
    /// A client could not reach the server.
    #[error("cannot connect to {endpoint}: {}", plain(cause))]
    Connect {
        /// The endpoint, e.g. `tcp 127.0.0.1:8080`.
        endpoint: String,
        /// The operating system's reason, or a timeout.
        cause: io::Error,
    },
    /// An I/O error on an established connection, named by its endpoint.
    #[error("{context}: {}", plain(cause))]
    Io {
        /// What was being done, e.g. `reading from tcp 127.0.0.1:8080`.
        context: String,
        /// The operating system's reason.
        cause: io::Error,
    },
    /// A configuration the library cannot use (a bench `--size` too large for
    /// a datagram, conflicting settings): the caller's mistake, so the binary
    /// exits 2 as for any usage error.
    #[error("{0}")]
    InvalidConfig(String),
    /// A server was configured with no listener at all.
    #[error("nothing to listen on: the server configuration has no listener")]
    NoListeners,
}

/// Renders an I/O error the way the contract wants it: `address already in use`,
/// not `Address already in use (os error 98)`.
///
/// The standard library's `Display` appends the errno; users and scripts want the
/// words only, so the suffix is cut and the first letter lower-cased.
pub fn plain(err: &io::Error) -> String {
    let text = err.to_string();
    let words = match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => &text[..at],
        _ => text.as_str(),
    };
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::from("unknown error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_drops_the_errno_suffix_and_lowercases() {
        let err = io::Error::from_raw_os_error(98);
        assert_eq!(plain(&err), "address already in use");
        let err = io::Error::from_raw_os_error(111);
        assert_eq!(plain(&err), "connection refused");
    }

    #[test]
    fn plain_keeps_custom_messages() {
        let err = io::Error::new(io::ErrorKind::TimedOut, "timed out after 5s");
        assert_eq!(plain(&err), "timed out after 5s");
    }

    #[test]
    fn listen_error_is_one_contract_line() {
        let err = Error::Listen {
            endpoint: "tcp 127.0.0.1:8080".into(),
            cause: io::Error::from_raw_os_error(98),
        };
        assert_eq!(
            err.to_string(),
            "cannot listen on tcp 127.0.0.1:8080: address already in use"
        );
    }
}
