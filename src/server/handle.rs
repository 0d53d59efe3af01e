//! [`RunningServer`]: the handle of a server spawned on the caller's Tokio
//! runtime ([`Server::spawn`]), to learn its addresses and stop it.

use tokio::task::JoinHandle;

use super::bound::{Server, tcp_addrs};
use super::shutdown::ShutdownSignal;
use super::workers::runtime_error;
use crate::Error;
use crate::endpoint::Endpoint;

impl Server {
    /// Starts serving on the current Tokio runtime and returns a handle to stop
    /// it. The in-process way to run a server (tests, embedding).
    ///
    /// # Panics
    ///
    /// If called outside a Tokio runtime.
    pub fn spawn(self) -> RunningServer {
        let endpoints = self.endpoints().to_vec();
        let signal = ShutdownSignal::new();
        let task = tokio::spawn(self.run(signal.clone()));
        RunningServer {
            endpoints,
            signal,
            task: Some(task),
        }
    }
}

/// A server started with [`Server::spawn`]. Dropping it stops the server
/// at once (connections are cut off); [`RunningServer::shutdown`] stops it
/// gracefully.
#[derive(Debug)]
pub struct RunningServer {
    /// Where it listens.
    endpoints: Vec<Endpoint>,
    /// How to stop it.
    signal: ShutdownSignal,
    /// The task running [`Server::run`]; taken by `shutdown`.
    task: Option<JoinHandle<Result<(), Error>>>,
}

impl RunningServer {
    /// The bound endpoints, in the configured order.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The first TCP address; handy when the server has one listener.
    ///
    /// # Panics
    ///
    /// If the server has no TCP listener.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        tcp_addrs(&self.endpoints)
            .first()
            .copied()
            .expect("the server has a TCP listener")
    }

    /// The server's shutdown signal, to drive shutdown by hand.
    pub fn signal(&self) -> &ShutdownSignal {
        &self.signal
    }

    /// Shuts down gracefully (see [`Server::run`]); the returned future
    /// completes when the server has stopped.
    ///
    /// Shutdown begins when this is called, before the future is polled.
    ///
    /// # Errors
    ///
    /// The error the server stopped with. If the server's task panicked, the
    /// panic is resumed in the caller.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves shutdown underway; the server still stops.
    pub fn shutdown(mut self) -> impl Future<Output = Result<(), Error>> + Send + 'static {
        self.signal.begin();
        let task = self.task.take();
        async move {
            let Some(task) = task else { return Ok(()) };
            match task.await {
                Ok(result) => result,
                Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
                Err(err) => Err(runtime_error(std::io::Error::other(err.to_string()))),
            }
        }
    }
}

impl Drop for RunningServer {
    /// Stops the server without a grace period unless `shutdown` took over.
    fn drop(&mut self) {
        if self.task.is_some() {
            self.signal.cut_short();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `RunningServer` whose task does what `task` does.
    fn running(task: impl Future<Output = Result<(), Error>> + Send + 'static) -> RunningServer {
        RunningServer {
            endpoints: Vec::new(),
            signal: ShutdownSignal::new(),
            task: Some(tokio::spawn(task)),
        }
    }

    #[tokio::test]
    async fn the_servers_error_reaches_the_caller_of_shutdown() {
        let result = running(async { Err(Error::NoListeners) }).shutdown().await;
        assert!(matches!(result, Err(Error::NoListeners)), "{result:?}");
    }

    #[tokio::test]
    async fn the_servers_panic_reaches_the_caller_of_shutdown() {
        let server = running(async { panic!("the server broke") });
        let caller = tokio::spawn(server.shutdown());
        let panic = caller
            .await
            .expect_err("the panic is resumed in the caller");
        let message = panic.into_panic();
        assert_eq!(message.downcast_ref::<&str>(), Some(&"the server broke"));
    }
}
