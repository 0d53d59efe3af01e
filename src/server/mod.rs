//! The server. Data flow: [`ServerConfig`] -> [`Server::bind`] (bound
//! sockets) -> [`workers`] (a runtime per core) -> [`accepting`] -> per
//! stream socket a [`listener`] accept loop whose [`connection`] tasks read,
//! transform and write (after a [`proxy`] header when configured; over
//! [`tls`] on TLS listeners), per UDP
//! socket a [`udp`] loop; [`os_signals`] -> a [`ShutdownSignal`] -> [`drain`].

mod accepting;
mod admission;
mod bound;
mod config;
mod connection;
mod drain;
mod handle;
mod listener;
mod memory;
mod os_signals;
pub mod proxy;
mod reload;
mod shutdown;
mod socket_file;
mod state;
mod tls;
mod udp;
mod websocket;
mod workers;

pub use bound::Server;
pub use config::{ServerConfig, WsConfig};
pub use connection::BUFFER_SIZE;
pub use handle::RunningServer;
pub use os_signals::{survive_hangups_while_starting, watch_os_signals};
pub use reload::Reloader;
pub use shutdown::ShutdownSignal;
