//! What SIGHUP does to a running server: the access files (`--allow-file`,
//! `--deny-file`) are read again and, if all of them load, replace the rules
//! for every connection and datagram from then on; if one fails, the old
//! rules stay and a warning names the file. Open connections are untouched.
//! (The TLS certificate will be re-read here too.)

use std::sync::Arc;

use super::state::Settings;

/// A handle on a server's reloadable state, for the signal handler.
#[derive(Clone, Debug)]
pub struct Reloader(pub(super) Arc<Settings>);

impl Reloader {
    /// Re-reads what can be re-read, logging the outcome.
    pub fn reload(&self) {
        match self.0.access.reload() {
            Ok(true) => tracing::info!("SIGHUP: access files read again"),
            Ok(false) => {
                tracing::info!("SIGHUP: nothing to reload (no access or TLS files); ignored")
            }
            Err(err) => {
                tracing::warn!(error = %err, "SIGHUP: the old access rules stay");
            }
        }
    }
}
