//! upecho: a fast, robust uppercase-echo network service, its client and its
//! load generator.
//!
//! Data flows one way:
//!
//! ```text
//! cli (flags -> config) -> endpoint (bind) -> server (a runtime per core, shutdown)
//!     -> listener (accept, limits, idle sweep) -> [proxy (PROXY header, if expected)]
//!     -> connection (read -> transform -> write)
//!     [metrics (GET /metrics): counts folded in at accept, at close, per UDP batch]
//! client: endpoint (connect) -> repl (terminal) | pipe (stdin/stdout)
//! bench:  load (connections, verify every byte) -> stats -> report (human | JSON)
//! ```
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

// Denied everywhere; allowed only in `transform::wide`, where the measured
// reason and the safety argument are written down.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod client;
pub mod endpoint;
pub mod error;
pub mod escape;
pub(crate) mod http;
pub(crate) mod metrics;
pub mod server;
pub mod transform;

pub use endpoint::{Endpoint, HostPort};
pub use error::Error;
pub use server::{RunningServer, Server, ServerConfig, ShutdownSignal};
pub use transform::{Output, StreamTransform, Transform, upper_ascii};
