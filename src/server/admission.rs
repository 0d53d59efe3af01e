//! Who is let in: the access rules (`--allow`, `--deny`) and the per-source
//! limit (`--max-per-source`), judged for a stream connection at accept,
//! before a byte is read, or, for one that must send a PROXY header, on the
//! client the header names as soon as it is complete. A Unix peer has no
//! address and is always let in.

use std::net::{IpAddr, SocketAddr};

use super::state::Settings;
use crate::access::per_source::SourceSlot;

/// Why a connection was closed at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The access rules deny its source.
    Denied,
    /// Its source already has `--max-per-source` connections open.
    PerSource,
}

impl Refused {
    /// The `reason` label of `upecho_connections_closed_total`, and the
    /// connection's `end` in the log.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refused::Denied => "denied",
            Refused::PerSource => "per_source",
        }
    }
}

/// Judges a connection just accepted from `peer` (as the listener names it).
/// One that must send a PROXY header is let in here and judged by
/// [`after_header`]. `Ok` holds its source's slot under `--max-per-source`.
pub(super) fn at_accept(peer: &str, settings: &Settings) -> Result<Option<SourceSlot>, Refused> {
    if settings.access.current().is_open() && settings.per_source.is_none() {
        return Ok(None); // nothing to judge: no parse, no lookup
    }
    let proxied = settings.proxy.as_ref();
    if proxied.is_some_and(|policy| policy.expects_header(peer)) {
        return Ok(None);
    }
    match peer.parse::<SocketAddr>() {
        Ok(addr) => judge(addr.ip(), settings),
        Err(_) => Ok(None), // a Unix peer
    }
}

/// Judges a connection whose PROXY header named `client`, or, for a header
/// that names none (v2 `LOCAL`: the balancer's own check), its socket peer
/// `proxy`.
pub(super) fn after_header(
    client: Option<SocketAddr>,
    proxy: &str,
    settings: &Settings,
) -> Result<Option<SourceSlot>, Refused> {
    let judged = client.or_else(|| proxy.parse().ok());
    match judged {
        Some(addr) => judge(addr.ip(), settings),
        None => Ok(None),
    }
}

/// The rules first (a denied source takes no slot), then the limit.
fn judge(ip: IpAddr, settings: &Settings) -> Result<Option<SourceSlot>, Refused> {
    if !settings.access.current().permits(ip) {
        return Err(Refused::Denied);
    }
    match &settings.per_source {
        Some(table) => table.enter(ip).map(Some).ok_or(Refused::PerSource),
        None => Ok(None),
    }
}
