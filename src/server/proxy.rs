//! The PROXY protocol header phase of a stream connection (`serve
//! --proxy-protocol`): before a connection enters its read -> transform ->
//! write loop, the bytes a load balancer (HAProxy's `send-proxy` or
//! `send-proxy-v2`) puts first are read, parsed and dropped, and the client
//! address they carry becomes the connection's peer.
//!
//! Why a phase of its own, ahead of the [connection](super::connection) loop:
//! the loop then stays exactly as it is without the flag (one branch when a
//! connection starts, none per read), and the phase's buffer (up to what a v2
//! header allows, 16 + 65535 bytes) exists only while a header is awaited, so a
//! connection still owns no buffer in steady state. Bytes that arrive after
//! the header in the same read are handed to the connection as its first
//! payload. Parsing itself is [`ppp`]'s; this module frames the header (which
//! version, where it ends, whether more must be read) so that "incomplete" and
//! "malformed" never get confused, and bounds how much is read.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The longest v1 header, `\r\n` included (the PROXY protocol specification).
pub const V1_MAX: usize = 107;

/// The longest v2 header: 16 fixed bytes and a 16-bit length.
pub const V2_MAX: usize = 16 + u16::MAX as usize;

/// The 12 bytes every v2 header starts with.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// What every v1 header starts with.
const V1_PREFIX: &[u8] = b"PROXY ";

/// The first read's size: a v1 header or a v2 header with a few TLVs fits.
const FIRST_READ: usize = 256;

/// What the bytes received so far hold, as [`parse`] sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A complete header: the first `len` bytes; what follows is payload.
    Header {
        /// The header's length in bytes.
        len: usize,
        /// The client it names, or `None` when it names none the server can
        /// use (v2 `LOCAL`, v1 `UNKNOWN`, v2 `UNSPEC` or `AF_UNIX`): the
        /// socket's own peer then stands.
        source: Option<SocketAddr>,
    },
    /// The bytes are the start of a header: read more.
    Incomplete,
    /// The bytes cannot be (the start of) a header; says why.
    Invalid(&'static str),
}

/// Frames and parses the PROXY protocol header at the start of `received`
/// (v1 text or v2 binary, told apart by their first bytes).
///
/// Returns [`Parsed::Incomplete`] if and only if `received` is a proper
/// prefix of some valid header no longer than the protocol allows, so a
/// reader that stops at anything else never waits for bytes that cannot
/// help.
///
/// ```
/// use upecho::server::proxy::{Parsed, parse};
///
/// let bytes = b"PROXY TCP4 192.0.2.1 192.0.2.2 4000 80\r\nhello";
/// let Parsed::Header { len, source } = parse(bytes) else { panic!() };
/// assert_eq!(&bytes[len..], b"hello");
/// assert_eq!(source, Some("192.0.2.1:4000".parse().unwrap()));
/// assert_eq!(parse(b"PROXY TCP4 192"), Parsed::Incomplete);
/// assert!(matches!(parse(b"hello\r\n"), Parsed::Invalid(_)));
/// ```
pub fn parse(received: &[u8]) -> Parsed {
    if starts_like(received, &V2_SIGNATURE) {
        parse_v2(received)
    } else if starts_like(received, V1_PREFIX) {
        parse_v1(received)
    } else {
        Parsed::Invalid("not a PROXY protocol header")
    }
}

/// Returns true if and only if `received` and `prefix` agree on their
/// common length.
fn starts_like(received: &[u8], prefix: &[u8]) -> bool {
    let n = received.len().min(prefix.len());
    received[..n] == prefix[..n]
}

/// A v2 header: 16 bytes, the last two of which give the length of the rest.
fn parse_v2(received: &[u8]) -> Parsed {
    if received.len() < 16 {
        return Parsed::Incomplete;
    }
    let len = 16 + usize::from(u16::from_be_bytes([received[14], received[15]]));
    if received.len() < len {
        // Version, command and family are known already: fail now if they
        // are wrong rather than wait for bytes that cannot help. ppp
        // reports a short but otherwise valid header as incomplete.
        return match ppp::v2::Header::try_from(received) {
            Err(ppp::v2::ParseError::Partial(..) | ppp::v2::ParseError::Incomplete(..)) => {
                Parsed::Incomplete
            }
            _ => Parsed::Invalid("malformed PROXY v2 header"),
        };
    }
    match ppp::v2::Header::try_from(&received[..len]) {
        Ok(header) => {
            use ppp::v2::{Addresses, Command};
            let source = match (header.command, header.addresses) {
                (Command::Proxy, Addresses::IPv4(ip)) => {
                    Some(SocketAddr::from((ip.source_address, ip.source_port)))
                }
                (Command::Proxy, Addresses::IPv6(ip)) => {
                    Some(SocketAddr::from((ip.source_address, ip.source_port)))
                }
                _ => None,
            };
            Parsed::Header { len, source }
        }
        Err(_) => Parsed::Invalid("malformed PROXY v2 header"),
    }
}

/// A v1 header: one line of text ending in `\r\n`, at most [`V1_MAX`] bytes.
fn parse_v1(received: &[u8]) -> Parsed {
    let window = &received[..received.len().min(V1_MAX)];
    let Some(newline) = window.iter().position(|&b| b == b'\n') else {
        return if received.len() >= V1_MAX {
            Parsed::Invalid("PROXY v1 header longer than 107 bytes")
        } else {
            Parsed::Incomplete
        };
    };
    let len = newline + 1;
    match ppp::v1::Header::try_from(&received[..len]) {
        // ppp ends the header at the first `\r`: it must be the one just
        // before the `\n`.
        Ok(header) if header.header.len() == len => {
            use ppp::v1::Addresses;
            let source = match header.addresses {
                Addresses::Tcp4(ip) => Some(SocketAddr::from((ip.source_address, ip.source_port))),
                Addresses::Tcp6(ip) => Some(SocketAddr::from((ip.source_address, ip.source_port))),
                Addresses::Unknown => None,
            };
            Parsed::Header { len, source }
        }
        _ => Parsed::Invalid("malformed PROXY v1 header"),
    }
}

/// Who must send a header: the validated form of `--proxy-protocol` and
/// `--proxy-from`.
#[derive(Clone, Debug)]
pub(crate) struct ProxyPolicy {
    /// Senders that must send a header; empty = every sender.
    pub(crate) from: Vec<IpNet>,
    /// The whole header phase must end within this.
    pub(crate) timeout: Duration,
}

impl ProxyPolicy {
    /// Returns true if and only if a connection from `peer` (as the listener
    /// names it) must start with a header.
    ///
    /// With a source list, the contract serves every sender outside it
    /// directly; a Unix socket's peer has no IP address a list could name,
    /// so it is outside any list and sends no header. Without a list, every
    /// connection, Unix ones included, must start with a header.
    pub(crate) fn expects_header(&self, peer: &str) -> bool {
        if self.from.is_empty() {
            return true;
        }
        match peer.parse::<SocketAddr>() {
            Ok(addr) => {
                let ip: IpAddr = addr.ip().to_canonical();
                self.from.iter().any(|net| net.contains(&ip))
            }
            // "unix ...": not an IP sender, so not in the list.
            Err(_) => false,
        }
    }
}

/// Why a connection's header phase failed.
#[derive(Debug)]
pub(crate) enum HeaderError {
    /// The bytes are not a header.
    Invalid(&'static str),
    /// The peer closed before the header was complete.
    Eof,
    /// The phase took longer than the policy's timeout.
    Timeout,
    /// A read failed.
    Io(std::io::Error),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Invalid(why) => f.write_str(why),
            HeaderError::Eof => f.write_str("peer closed before the PROXY header was complete"),
            HeaderError::Timeout => f.write_str("PROXY header not complete in time"),
            HeaderError::Io(err) => f.write_str(&crate::error::plain(err)),
        }
    }
}

/// A header read off a connection.
#[derive(Debug)]
pub(crate) struct Received {
    /// The client the header names, if any.
    pub(crate) source: Option<SocketAddr>,
    /// Bytes that came after the header in the same read: the start of the
    /// payload.
    pub(crate) payload: Vec<u8>,
}

/// Reads until `stream` has delivered a complete header, within `timeout`
/// (zero: no limit).
///
/// # Cancel safety
///
/// Dropping the future loses what was read; the connection is being closed
/// then anyway.
pub(crate) async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<Received, HeaderError> {
    // Zero means no limit, as for every timeout of the contract.
    if timeout.is_zero() {
        return read_until_header(stream).await;
    }
    tokio::time::timeout(timeout, read_until_header(stream))
        .await
        .unwrap_or(Err(HeaderError::Timeout))
}

/// Reads, growing a buffer up to [`V2_MAX`], until [`parse`] has a verdict.
async fn read_until_header<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Received, HeaderError> {
    let mut received: Vec<u8> = Vec::new();
    loop {
        let start = received.len();
        let room = FIRST_READ.max(start).min(V2_MAX - start);
        if room == 0 {
            // Unreachable while `parse` keeps its promise; never read unbounded.
            return Err(HeaderError::Invalid("PROXY header longer than 65551 bytes"));
        }
        received.resize(start + room, 0);
        let n = stream
            .read(&mut received[start..])
            .await
            .map_err(HeaderError::Io)?;
        received.truncate(start + n);
        if n == 0 {
            return Err(HeaderError::Eof);
        }
        match parse(&received) {
            Parsed::Header { len, source } => {
                received.drain(..len);
                received.shrink_to_fit();
                return Ok(Received {
                    source,
                    payload: received,
                });
            }
            Parsed::Incomplete => {}
            Parsed::Invalid(why) => return Err(HeaderError::Invalid(why)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: ppp::v2::Command, tlv: &[u8]) -> Vec<u8> {
        let addresses: ppp::v2::Addresses =
            ppp::v2::IPv4::new([192, 0, 2, 1], [192, 0, 2, 2], 4000, 80).into();
        ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | command,
            ppp::v2::Protocol::Stream,
            addresses,
        )
        .write_tlv(ppp::v2::Type::NoOp, tlv)
        .unwrap()
        .build()
        .unwrap()
    }

    #[test]
    fn v1_header_gives_its_length_and_source_and_every_prefix_is_incomplete() {
        let header = b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 80\r\n";
        for n in 0..header.len() {
            assert_eq!(parse(&header[..n]), Parsed::Incomplete, "{n}");
        }
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(b"payload");
        assert_eq!(
            parse(&bytes),
            Parsed::Header {
                len: header.len(),
                source: Some("[2001:db8::1]:4000".parse().unwrap())
            }
        );
    }

    #[test]
    fn v1_unknown_names_no_source() {
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Parsed::Header {
                len: 15,
                source: None
            }
        );
    }

    #[test]
    fn v1_garbage_and_overlong_lines_are_invalid() {
        for bad in [
            &b"hello\r\n"[..],
            b"PROXY TCP4 nonsense\r\n",
            b"PROXY TCP4 192.0.2.1 192.0.2.2 4000 80\n",
            b"GET / HTTP/1.1\r\n",
        ] {
            assert!(matches!(parse(bad), Parsed::Invalid(_)), "{bad:?}");
        }
        let mut long = b"PROXY ".to_vec();
        long.resize(V1_MAX - 1, b'x');
        assert_eq!(parse(&long), Parsed::Incomplete);
        long.push(b'x');
        assert!(matches!(parse(&long), Parsed::Invalid(_)));
    }

    #[test]
    fn v2_with_tlvs_gives_its_length_and_source_and_every_prefix_is_incomplete() {
        let header = v2(ppp::v2::Command::Proxy, &[42; 300]);
        for n in 0..header.len() {
            assert_eq!(parse(&header[..n]), Parsed::Incomplete, "{n}");
        }
        let mut bytes = header.clone();
        bytes.extend_from_slice(b"payload");
        assert_eq!(
            parse(&bytes),
            Parsed::Header {
                len: header.len(),
                source: Some("192.0.2.1:4000".parse().unwrap())
            }
        );
    }

    #[test]
    fn v2_local_names_no_source() {
        let header = v2(ppp::v2::Command::Local, &[]);
        assert_eq!(
            parse(&header),
            Parsed::Header {
                len: header.len(),
                source: None
            }
        );
    }

    #[test]
    fn v2_with_a_bad_version_is_invalid_before_its_length_arrives() {
        let mut header = v2(ppp::v2::Command::Proxy, &[0; 100]);
        header[12] = 0x31;
        assert!(matches!(parse(&header[..20]), Parsed::Invalid(_)));
        let mut wrong_signature = header.clone();
        wrong_signature[5] = b'X';
        assert!(matches!(parse(&wrong_signature), Parsed::Invalid(_)));
    }

    #[test]
    fn the_longest_v2_header_fits_the_bound() {
        let mut header = V2_SIGNATURE.to_vec();
        header.extend_from_slice(&[0x20, 0x00, 0xff, 0xff]);
        header.resize(V2_MAX, 0);
        assert_eq!(parse(&header[..V2_MAX - 1]), Parsed::Incomplete);
        assert_eq!(
            parse(&header),
            Parsed::Header {
                len: V2_MAX,
                source: None
            }
        );
    }

    #[test]
    fn a_source_list_decides_for_ip_peers_and_leaves_unix_peers_out() {
        let policy = ProxyPolicy {
            from: vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
            timeout: Duration::from_secs(5),
        };
        assert!(policy.expects_header("10.1.2.3:5000"));
        assert!(policy.expects_header("[::1]:5000"));
        assert!(!policy.expects_header("127.0.0.1:5000"));
        assert!(!policy.expects_header("unix"));
        assert!(!policy.expects_header("unix /tmp/client.sock"));
        let everyone = ProxyPolicy {
            from: Vec::new(),
            ..policy
        };
        assert!(everyone.expects_header("127.0.0.1:5000"));
        assert!(everyone.expects_header("unix"));
    }

    #[tokio::test]
    async fn header_split_across_reads_leaves_the_payload_after_it() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let reader = tokio::spawn(async move {
            read_header(&mut server, Duration::from_secs(5))
                .await
                .unwrap()
        });
        use tokio::io::AsyncWriteExt;
        client.write_all(b"PROXY TCP4 192.0.2.1 ").await.unwrap();
        client
            .write_all(b"192.0.2.2 4000 80\r\nhello")
            .await
            .unwrap();
        let received = reader.await.unwrap();
        assert_eq!(received.source, Some("192.0.2.1:4000".parse().unwrap()));
        assert_eq!(received.payload, b"hello");
    }

    #[tokio::test(start_paused = true)]
    async fn half_a_header_times_out() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        use tokio::io::AsyncWriteExt;
        client.write_all(b"PROXY TCP4").await.unwrap();
        let err = read_header(&mut server, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, HeaderError::Timeout), "{err}");
    }
}
