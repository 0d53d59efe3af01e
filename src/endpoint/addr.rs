//! Addresses as the user writes them: `host:port` ([`HostPort`], checked for
//! syntax, resolved when used) and Unix socket names ([`UnixPath`], a file
//! path or an `@` abstract name), shown as the contract prints them. The cli
//! parses into these; bind and connect turn them into sockets.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::Error;

/// A `host:port` pair as the user wrote it, checked for syntax but not resolved.
///
/// The host is an IPv4 literal, an IPv6 literal (written in brackets), or a host
/// name such as `localhost`. Resolution happens when the address is used, so a
/// typo in the syntax is a usage error (exit 2) while an unknown name is a
/// runtime error (exit 1), like in `nc`.
///
/// ```
/// let addr: upecho::HostPort = "[::1]:8080".parse().unwrap();
/// assert_eq!(addr.port(), 8080);
/// assert_eq!(addr.to_string(), "[::1]:8080");
/// assert!("127.0.0.1".parse::<upecho::HostPort>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// The host without brackets.
    host: String,
    /// The port; 0 asks the kernel for a free one when listening.
    port: u16,
}

impl HostPort {
    /// The host as written, without IPv6 brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port number.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Resolves the host to socket addresses, in the resolver's order.
    /// `proto` (`tcp`, `udp`) names what the address is for in the error.
    ///
    /// # Errors
    ///
    /// [`Error::Resolve`] when the name is unknown or resolves to nothing,
    /// naming the host and the cause in plain words: `cannot resolve
    /// nosuch.invalid: no such host`.
    pub fn resolve(&self, proto: &str) -> Result<Vec<SocketAddr>, Error> {
        const NO_SUCH_HOST: &str = "no such host";

        /// The standard library reports a getaddrinfo failure as
        /// `failed to lookup address information: <gai_strerror text>`; users
        /// want the cause alone, in the words `nc` and browsers use.
        fn plain_resolver_error(err: io::Error) -> io::Error {
            if err.raw_os_error().is_some() {
                return err; // EAI_SYSTEM: an errno, which `error::plain` words
            }
            let text = err.to_string();
            let detail = text
                .strip_prefix("failed to lookup address information: ")
                .unwrap_or(&text);
            match detail {
                "Name or service not known" | "No address associated with hostname" => {
                    io::Error::new(io::ErrorKind::NotFound, NO_SUCH_HOST)
                }
                // `error::plain` lower-cases the first letter of the rest.
                _ => io::Error::new(err.kind(), detail.to_owned()),
            }
        }

        let fail = |cause| Error::Resolve {
            host: self.host.clone(),
            endpoint: format!("{proto} {self}"),
            cause,
        };
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        if is_localhost(&self.host) {
            return Ok(LOOPBACK.map(|ip| SocketAddr::new(ip, self.port)).to_vec());
        }
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|err| fail(plain_resolver_error(err)))?
            .collect();
        if addrs.is_empty() {
            return Err(fail(io::Error::new(io::ErrorKind::NotFound, NO_SUCH_HOST)));
        }
        Ok(addrs)
    }
}

/// What `localhost` resolves to: IPv4's loopback first, as the usual
/// `/etc/hosts` lists it.
const LOOPBACK: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
];

/// Whether `host` is `localhost` or a name under `.localhost`, which
/// RFC 6761 (section 6.3) has resolve to loopback without asking a name
/// server. Answered here, not by the system's resolver: a static binary
/// in a `scratch` image has no NSS modules and no `/etc/hosts` to ask.
fn is_localhost(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    host.eq_ignore_ascii_case("localhost")
        || host.len() > ".localhost".len()
            && host[host.len() - ".localhost".len()..].eq_ignore_ascii_case(".localhost")
}

impl From<SocketAddr> for HostPort {
    fn from(addr: SocketAddr) -> Self {
        HostPort {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

impl FromStr for HostPort {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self, Error> {
        let bad = |reason| Error::Address {
            input: input.to_string(),
            reason,
        };
        let (host, port) = if let Some(rest) = input.strip_prefix('[') {
            let (host, port) = rest
                .split_once("]:")
                .ok_or_else(|| bad("expected [ipv6]:port"))?;
            host.parse::<std::net::Ipv6Addr>()
                .map_err(|_| bad("not a valid IPv6 address"))?;
            (host, port)
        } else {
            let (host, port) = input
                .rsplit_once(':')
                .ok_or_else(|| bad("expected host:port"))?;
            if host.contains(':') {
                return Err(bad(
                    "IPv6 addresses must be written in brackets, as [::1]:8080",
                ));
            }
            check_host(host).map_err(bad)?;
            (host, port)
        };
        let port = port
            .parse::<u16>()
            .map_err(|_| bad("port must be a number from 0 to 65535"))?;
        Ok(HostPort {
            host: host.to_string(),
            port,
        })
    }
}

/// Accepts an IPv4 literal or a syntactically valid host name.
fn check_host(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("missing host");
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return host
            .parse::<Ipv4Addr>()
            .map(|_| ())
            .map_err(|_| "not a valid IPv4 address");
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if host.len() <= 253 && host.trim_end_matches('.').split('.').all(label_ok) {
        Ok(())
    } else {
        Err("not a valid host name")
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The name of a Unix stream socket: a file system path, or, written with a
/// leading `@`, a name in Linux's abstract namespace (no file).
///
/// ```
/// let file = upecho::endpoint::UnixPath::from("/run/upecho.sock");
/// assert!(file.abstract_name().is_none());
/// let named = upecho::endpoint::UnixPath::from("@upecho");
/// assert_eq!(named.abstract_name(), Some(&b"upecho"[..]));
/// assert_eq!(named.to_string(), "@upecho");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnixPath(PathBuf);

impl UnixPath {
    /// The path as given (with the `@` of an abstract name).
    pub fn as_path(&self) -> &Path {
        &self.0
    }

    /// The abstract name without its `@`, or `None` for a file path.
    pub fn abstract_name(&self) -> Option<&[u8]> {
        self.0.as_os_str().as_bytes().strip_prefix(b"@")
    }

    /// The socket address: the path, or for an abstract name the name after
    /// a NUL byte, as Linux spells it.
    pub(super) fn sock_addr(&self) -> io::Result<socket2::SockAddr> {
        self.check_length()?;
        match self.abstract_name() {
            Some(name) => {
                let mut bytes = vec![0u8];
                bytes.extend_from_slice(name);
                socket2::SockAddr::unix(std::ffi::OsStr::from_bytes(&bytes))
            }
            None => socket2::SockAddr::unix(&self.0),
        }
    }

    /// The same address as the standard library holds it, for clients.
    pub(super) fn std_addr(&self) -> io::Result<std::os::unix::net::SocketAddr> {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::net::SocketAddr as UnixAddr;
        self.check_length()?;
        match self.abstract_name() {
            Some(name) => UnixAddr::from_abstract_name(name),
            None => UnixAddr::from_pathname(&self.0),
        }
    }

    /// Says how long a name is when it does not fit in `sun_path` (108
    /// bytes, with a NUL after a path or before an abstract name), instead of
    /// the standard library's `path must be shorter than SUN_LEN`.
    fn check_length(&self) -> io::Result<()> {
        let (what, len, after) = match self.abstract_name() {
            Some(name) => ("abstract name", name.len(), " after '@'"),
            None => ("path", self.0.as_os_str().len(), ""),
        };
        if len <= MAX_UNIX_NAME {
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} too long: {len} bytes{after}, at most {MAX_UNIX_NAME}"),
        ))
    }
}

/// The longest Unix socket path, or abstract name after its `@`, in bytes.
const MAX_UNIX_NAME: usize = 107;

impl<P: Into<PathBuf>> From<P> for UnixPath {
    fn from(path: P) -> Self {
        UnixPath(path.into())
    }
}

/// Shown with control characters escaped (`\n`, `\x1b`): a path is the
/// operator's or a client's text, and is printed in readiness lines, log
/// fields and errors, where a raw newline or escape sequence could forge a
/// line or colour the terminal.
impl fmt::Display for UnixPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::escape::control(&self.0.to_string_lossy()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<HostPort, Error> {
        s.parse()
    }

    #[test]
    fn localhost_and_names_under_it_are_loopback_without_the_resolver() {
        for name in ["localhost", "LocalHost", "localhost.", "echo.localhost"] {
            let addrs = parse(&format!("{name}:8080"))
                .unwrap()
                .resolve("tcp")
                .unwrap();
            assert_eq!(
                addrs,
                [
                    "127.0.0.1:8080".parse().unwrap(),
                    "[::1]:8080".parse().unwrap()
                ],
                "{name}"
            );
        }
        assert!(!is_localhost("notlocalhost"));
        assert!(!is_localhost("localhost.example"));
    }

    #[test]
    fn accepts_ipv4_ipv6_and_names() {
        assert_eq!(parse("127.0.0.1:0").unwrap().to_string(), "127.0.0.1:0");
        assert_eq!(parse("[::1]:8080").unwrap().host(), "::1");
        assert_eq!(parse("localhost:65535").unwrap().port(), 65535);
        assert_eq!(
            parse("my-host.example.:1").unwrap().host(),
            "my-host.example."
        );
    }

    #[test]
    fn rejects_malformed_addresses_with_a_reason() {
        for bad in [
            "127.0.0.1",
            "127.0.0.1:",
            "127.0.0.1:65536",
            "127.0.0.1:http",
            "999.1.1.1:80",
            "::1:80",
            "[::1]80",
            "[zz]:80",
            ":80",
            "bad_host:80",
            "-x:80",
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(
                err.to_string()
                    .starts_with(&format!("invalid address '{bad}': "))
            );
        }
    }

    #[test]
    fn a_unix_path_is_shown_with_its_control_characters_escaped() {
        let forged = UnixPath::from("/tmp/a\nINFO server stopped\x1b[31m.sock");
        assert_eq!(
            forged.to_string(),
            "/tmp/a\\nINFO server stopped\\x1b[31m.sock"
        );
        assert_eq!(UnixPath::from("@name\r").to_string(), "@name\\r");
        assert_eq!(UnixPath::from("/run/ü.sock").to_string(), "/run/ü.sock");
    }
}
