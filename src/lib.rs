//! upecho: a fast, robust uppercase-echo network service, its client and its
//! load generator.
//!
//! Data flows one way:
//!
//! ```text
//! cli (flags -> config) -> endpoint (bind, or inherit from systemd)
//!     -> server (bound -> workers: a runtime per core -> accepting)
//!     -> listener (accept, limits, idle sweep) -> [proxy (PROXY header, if expected)]
//!     -> connection (read -> transform -> write)
//!     -> server::udp (recvmmsg -> drop rules, echo rule -> transform -> sendmmsg)
//!     os_signals -> shutdown -> drain
//!     [metrics (counts folded in at accept, at close, per UDP batch)
//!      <- http (hyper: GET /metrics, GET /healthz)]
//! client: endpoint (connect) -> session -> repl (terminal) | pipe (stdin/stdout) | udp
//! bench:  config -> connect (open every connection) -> load (phases)
//!     -> pingpong | stream | datagram (verify every byte) -> stats -> report (human | JSON)
//! ```
//!
//! The interface these modules implement (flags, output, exit statuses) is
//! written down in `docs/INTERFACE.md`; the layout, one line per file, in
//! the README.
//!
//! Start a server in-process on port 0, learn its address, shut it down:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), upecho::Error> {
//! let server = upecho::Server::bind(upecho::ServerConfig::tcp("127.0.0.1:0".parse()?))?;
//! let running = server.spawn();
//! println!("serving on {}", running.local_addr());
//! running.shutdown().await?;
//! # Ok(())
//! # }
//! ```

// Denied everywhere; allowed only in `transform::wide` and in
// `server::memory` (the `malloc_trim` call), where the measured reason and
// the safety argument are written down.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod access;
pub mod bench;
pub mod client;
pub mod endpoint;
pub mod error;
pub mod escape;
mod generations;
pub(crate) mod http;
pub(crate) mod metrics;
pub mod server;
pub mod tls;
pub mod transform;

pub use endpoint::{Endpoint, HostPort};
pub use error::Error;
pub use server::{RunningServer, Server, ServerConfig, ShutdownSignal, WsConfig};
pub use transform::{Output, StreamTransform, Transform, upper_ascii};
