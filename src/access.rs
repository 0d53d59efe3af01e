//! Who may be served: `--allow` and `--deny` networks, and the files that
//! list more (`--allow-file`, `--deny-file`, re-read on SIGHUP). Deny wins
//! over allow; with no allow rule at all, every source not denied is served.
//!
//! The rules are checked before a byte is read: at accept for a stream
//! connection, for each datagram before it is transformed, and on the client
//! a PROXY header names as soon as the header is complete. A Unix socket's
//! peer has no address and is never checked.
//!
//! A lookup costs one binary search per prefix length the rules use (at most
//! 33 for IPv4, 129 for IPv6) in the sorted masked addresses of that length:
//! an allow list of 1,000 networks of one length is ten comparisons. Measured
//! with callgrind (a UDP server answering 10,000 datagrams with an allow file
//! of 999 /24 networks and 127.0.0.0/8): the lookup took 367 instructions a
//! datagram with std hash sets (SipHash), 170 like this, of some 3,600 a
//! datagram answered in all (user space; the system calls cost far more).

pub(crate) mod per_source;
pub(crate) mod udp_rate;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use ipnet::IpNet;

use crate::Error;

/// The access flags as given: networks and the files to read more from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessConfig {
    /// `--allow`: only sources inside these (and the allow files') are served.
    pub allow: Vec<IpNet>,
    /// `--deny`: sources inside these are never served.
    pub deny: Vec<IpNet>,
    /// `--allow-file`: one network per line, `#` comments.
    pub allow_files: Vec<PathBuf>,
    /// `--deny-file`: one network per line, `#` comments.
    pub deny_files: Vec<PathBuf>,
}

impl AccessConfig {
    /// Reads the files and builds the rules.
    ///
    /// # Errors
    ///
    /// A file that cannot be read, or a line that is not a network, naming
    /// the file (and the line).
    pub fn load(&self) -> Result<Rules, Error> {
        let mut allow = self.allow.clone();
        for file in &self.allow_files {
            allow.extend(read_networks(file, "--allow-file")?);
        }
        let mut deny = self.deny.clone();
        for file in &self.deny_files {
            deny.extend(read_networks(file, "--deny-file")?);
        }
        // An allow list that was asked for but holds nothing (an empty or
        // all-comment file, or one caught half-written by a reload) serves
        // nobody: failing open would serve everyone.
        let listed = !self.allow.is_empty() || !self.allow_files.is_empty();
        if listed && allow.is_empty() {
            tracing::warn!("the allow list is empty: no source is served");
        }
        Ok(Rules {
            listed,
            allow: Networks::of(&allow),
            deny: Networks::of(&deny),
        })
    }

    /// True if there are files to re-read on SIGHUP.
    pub fn has_files(&self) -> bool {
        !self.allow_files.is_empty() || !self.deny_files.is_empty()
    }
}

/// Parses a network as the flags (`--allow`, `--deny`, `--proxy-from`) and
/// the access files take it: `CIDR`, or a bare address for one host
/// (`127.0.0.2` = `127.0.0.2/32`).
///
/// # Errors
///
/// A message saying what is wrong, for a usage error.
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net);
    }
    text.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
        let shown = crate::escape::control(text);
        format!("'{shown}' is not a network (CIDR such as 127.0.0.0/8) or an address")
    })
}

/// The networks in `path`, one per line; blank lines and `#` comments
/// (whole lines or after a network) are skipped.
fn read_networks(path: &Path, flag: &str) -> Result<Vec<IpNet>, Error> {
    let shown = crate::escape::control(&path.to_string_lossy()).into_owned();
    let text = std::fs::read_to_string(path).map_err(|cause| Error::Io {
        context: format!("cannot read {flag} {shown}"),
        cause,
    })?;
    let mut networks = Vec::new();
    for (at, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let net = parse_network(line).map_err(|why| Error::Io {
            context: format!("cannot read {flag} {shown}"),
            cause: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("line {}: {why}", at + 1),
            ),
        })?;
        networks.push(net);
    }
    Ok(networks)
}

/// The rules in force: which sources are served.
#[derive(Debug, Default)]
pub struct Rules {
    /// Whether an allow list was given (`--allow` or `--allow-file`): then
    /// only sources in `allow` are served, even if it is empty.
    listed: bool,
    /// Without `listed`: every source not denied is allowed.
    allow: Networks,
    /// Always wins.
    deny: Networks,
}

impl Rules {
    /// True if and only if `ip` may be served. An IPv4 address seen as
    /// `::ffff:a.b.c.d` (on a dual-stack socket) is judged as IPv4.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        !self.deny.contains(ip) && (!self.listed || self.allow.contains(ip))
    }

    /// True when there is no rule at all: every source is served, and a
    /// caller can skip the lookup.
    pub fn is_open(&self) -> bool {
        !self.listed && self.deny.is_empty()
    }
}

/// A set of networks, kept as one sorted list of masked addresses per
/// prefix length in use.
#[derive(Debug, Default)]
struct Networks {
    /// `(prefix length, masked addresses, sorted)`, longest prefix first.
    v4: Vec<(u8, Vec<u32>)>,
    /// The same for IPv6.
    v6: Vec<(u8, Vec<u128>)>,
}

impl Networks {
    /// The set of `networks`.
    fn of(networks: &[IpNet]) -> Networks {
        let mut set = Networks::default();
        for net in networks {
            match net.trunc() {
                IpNet::V4(v4) => {
                    let bits = mask4(u32::from(v4.addr()), v4.prefix_len());
                    insert(&mut set.v4, v4.prefix_len(), bits);
                }
                IpNet::V6(v6) => {
                    let bits = mask6(u128::from(v6.addr()), v6.prefix_len());
                    insert(&mut set.v6, v6.prefix_len(), bits);
                }
            }
        }
        set.v4.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
        set.v6.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
        for (_, list) in &mut set.v4 {
            list.sort_unstable();
            list.dedup();
        }
        for (_, list) in &mut set.v6 {
            list.sort_unstable();
            list.dedup();
        }
        set
    }

    /// True if it holds no network.
    fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// True if one of the networks holds `ip`.
    fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                self.v4
                    .iter()
                    .any(|(len, list)| list.binary_search(&mask4(bits, *len)).is_ok())
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                self.v6
                    .iter()
                    .any(|(len, list)| list.binary_search(&mask6(bits, *len)).is_ok())
            }
        }
    }
}

/// Adds `bits` to the list of prefix length `len` (sorted afterwards).
fn insert<T>(lists: &mut Vec<(u8, Vec<T>)>, len: u8, bits: T) {
    match lists.iter_mut().find(|(have, _)| *have == len) {
        Some((_, list)) => list.push(bits),
        None => lists.push((len, vec![bits])),
    }
}

/// `bits` with all but the first `len` bits cleared.
fn mask4(bits: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        bits & (u32::MAX << (32 - u32::from(len)))
    }
}

/// The same for IPv6.
fn mask6(bits: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        bits & (u128::MAX << (128 - u32::from(len)))
    }
}

/// The rules a running server checks, swapped whole when SIGHUP re-reads
/// the files: a check sees the old set or the new one, never a mix.
#[derive(Debug)]
pub(crate) struct Live {
    /// What to re-read.
    config: AccessConfig,
    /// What is in force.
    rules: RwLock<Arc<Rules>>,
}

impl Live {
    /// The rules loaded at start.
    pub(crate) fn new(config: AccessConfig, rules: Rules) -> Live {
        Live {
            config,
            rules: RwLock::new(Arc::new(rules)),
        }
    }

    /// The rules in force now; cheap (a read lock and a reference count).
    pub(crate) fn current(&self) -> Arc<Rules> {
        Arc::clone(&self.rules.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Re-reads the files (SIGHUP). On an error the old rules stay.
    ///
    /// # Errors
    ///
    /// As [`AccessConfig::load`].
    pub(crate) fn reload(&self) -> Result<bool, Error> {
        if !self.config.has_files() {
            return Ok(false);
        }
        let rules = self.config.load()?;
        *self.rules.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(rules);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow: &[&str], deny: &[&str]) -> Rules {
        let nets = |list: &[&str]| list.iter().map(|n| parse_network(n).unwrap()).collect();
        AccessConfig {
            allow: nets(allow),
            deny: nets(deny),
            ..AccessConfig::default()
        }
        .load()
        .unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn without_rules_everyone_is_served() {
        let open = rules(&[], &[]);
        assert!(open.is_open());
        assert!(open.permits(ip("192.0.2.1")) && open.permits(ip("::1")));
    }

    #[test]
    fn only_allowed_networks_are_served_and_deny_wins() {
        let r = rules(&["127.0.0.0/8", "2001:db8::/32"], &["127.0.0.3"]);
        assert!(r.permits(ip("127.0.0.2")));
        assert!(!r.permits(ip("127.0.0.3")), "deny wins over allow");
        assert!(!r.permits(ip("10.0.0.1")));
        assert!(r.permits(ip("2001:db8:1::5")));
        assert!(!r.permits(ip("2001:db9::1")));
        assert!(
            r.permits(ip("::ffff:127.0.0.2")),
            "a mapped address is IPv4"
        );
        assert!(!r.permits(ip("::ffff:127.0.0.3")));
    }

    #[test]
    fn deny_alone_serves_everyone_else() {
        let r = rules(&[], &["192.0.2.0/24", "::1"]);
        assert!(!r.permits(ip("192.0.2.200")) && !r.permits(ip("::1")));
        assert!(r.permits(ip("192.0.3.1")) && r.permits(ip("::2")));
    }

    #[test]
    fn prefix_lengths_zero_and_full_and_host_bits_are_handled() {
        let r = rules(&["10.1.2.3/8", "0.0.0.0/0"], &["10.9.9.9/32", "::/0"]);
        assert!(r.permits(ip("8.8.8.8")), "/0 holds everything");
        assert!(!r.permits(ip("10.9.9.9")));
        assert!(r.permits(ip("10.9.9.8")));
        assert!(!r.permits(ip("2001:db8::1")));
        let r = rules(&["10.1.2.3/8"], &[]);
        assert!(
            r.permits(ip("10.200.0.1")),
            "host bits of a CIDR are ignored"
        );
    }

    #[test]
    fn a_thousand_networks_agree_with_a_linear_scan() {
        let mut rng = fastrand::Rng::with_seed(3);
        let nets: Vec<IpNet> = (0..1000)
            .map(|_| {
                let addr = std::net::Ipv4Addr::from(rng.u32(..));
                IpNet::V4(ipnet::Ipv4Net::new(addr, rng.u8(8..=32)).unwrap().trunc())
            })
            .collect();
        let r = AccessConfig {
            allow: nets.clone(),
            ..AccessConfig::default()
        }
        .load()
        .unwrap();
        for _ in 0..20_000 {
            let probe = IpAddr::V4(std::net::Ipv4Addr::from(rng.u32(..)));
            let expected = nets.iter().any(|net| net.contains(&probe));
            assert_eq!(r.permits(probe), expected, "{probe}");
        }
        for net in &nets {
            assert!(r.permits(net.addr()), "{net}");
        }
    }

    #[test]
    fn a_file_lists_networks_with_comments_and_a_bad_line_is_named() {
        let dir = std::env::temp_dir().join(format!("upecho-access-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("allow.txt");
        std::fs::write(&good, "# operators\n127.0.0.2\n\n10.0.0.0/8  # lab\n").unwrap();
        let config = AccessConfig {
            allow_files: vec![good.clone()],
            ..AccessConfig::default()
        };
        let r = config.load().unwrap();
        assert!(r.permits(ip("127.0.0.2")) && r.permits(ip("10.4.4.4")));
        assert!(!r.permits(ip("127.0.0.3")));
        let bad = dir.join("bad.txt");
        std::fs::write(&bad, "127.0.0.2\n127.0.0.300\n").unwrap();
        let config = AccessConfig {
            deny_files: vec![bad.clone()],
            ..AccessConfig::default()
        };
        let err = config.load().unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "cannot read --deny-file {}: line 2: '127.0.0.300' is not a network (CIDR such as 127.0.0.0/8) or an address",
                bad.display()
            )
        );
        let missing = AccessConfig {
            allow_files: vec![dir.join("none")],
            ..AccessConfig::default()
        };
        let err = missing.load().unwrap_err().to_string();
        assert!(err.ends_with("none: no such file or directory"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_allow_file_with_no_network_in_it_serves_nobody_rather_than_everyone() {
        let dir = std::env::temp_dir().join(format!("upecho-access-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("allow.txt");
        std::fs::write(&empty, "# nobody yet\n\n").unwrap();
        let r = AccessConfig {
            allow_files: vec![empty],
            ..AccessConfig::default()
        }
        .load()
        .unwrap();
        assert!(!r.is_open());
        assert!(!r.permits(ip("127.0.0.1")) && !r.permits(ip("::1")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
