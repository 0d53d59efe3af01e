//! What SIGHUP does to a running server: the access files (`--allow-file`,
//! `--deny-file`) are read again and, if all of them load, replace the rules
//! for every connection and datagram from then on; the TLS certificate, key
//! and client CAs likewise, for every handshake from then on. If a file
//! fails, the old rules (or the old certificate) stay and a warning names
//! the file. Open connections are untouched.

use std::sync::Arc;

use super::state::Settings;
use crate::metrics::Metrics;

/// A handle on a server's reloadable state, for the signal handler.
#[derive(Clone, Debug)]
pub struct Reloader {
    /// What is re-read.
    pub(super) settings: Arc<Settings>,
    /// Where the certificate's expiry is shown.
    pub(super) metrics: Arc<Metrics>,
}

impl Reloader {
    /// Re-reads what can be re-read, logging the outcome.
    pub fn reload(&self) {
        let access = match self.settings.access.reload() {
            Ok(true) => {
                tracing::info!("SIGHUP: access files read again");
                true
            }
            Ok(false) => false,
            Err(err) => {
                tracing::warn!(error = %err, "SIGHUP: the old access rules stay");
                true
            }
        };
        let tls = match self.settings.tls.as_ref().filter(|tls| tls.has_files()) {
            Some(tls) => {
                match tls.reload() {
                    Ok(()) => {
                        self.metrics.set_tls_expiry(tls.expiry());
                        tracing::info!("SIGHUP: tls files read again");
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "SIGHUP: the old tls certificate stays");
                    }
                }
                true
            }
            None => false,
        };
        if !access && !tls {
            tracing::info!("SIGHUP: nothing to reload (no access or TLS files); ignored");
        }
    }
}
