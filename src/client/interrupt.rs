//! Ctrl-C for the client, delivered as a value. A SIGINT sets a flag and runs
//! the actions registered for it (shutting the connection down, so a blocked
//! read returns; waking a pending connect); the client loops then see the flag
//! and return [`Finish::Interrupted`](super::Finish::Interrupted), which `main`
//! turns into exit status 130. Nothing here ends the process.
//!
//! An action is kept only while its [`Registration`] lives, so a long-lived
//! interrupt (a library caller's) holds nothing of a session that ended: no
//! duplicated socket, no waker of a finished [`Interrupt::run`].

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;

use signal_hook::consts::SIGINT;
use signal_hook::iterator::{Handle, Signals};

use super::Duplex;

/// A one-shot cancellation: fired by Ctrl-C ([`Interrupt::on_sigint`]) or by
/// hand ([`Interrupt::trigger`]), observed by the client loops.
///
/// Clones share the same state. Actions registered with
/// [`on_interrupt`](Interrupt::on_interrupt) run once, when it fires (or at
/// once if it already has), if their [`Registration`] is still alive then.
///
/// ```
/// use upecho::client::Interrupt;
/// let interrupt = Interrupt::manual();
/// // A blocking job that would never end on its own.
/// let waited = {
///     let interrupt = interrupt.clone();
///     std::thread::spawn(move || interrupt.run(|| std::thread::park()))
/// };
/// interrupt.trigger();
/// assert_eq!(waited.join().unwrap(), None);
/// assert!(interrupt.is_interrupted());
/// ```
#[derive(Clone)]
pub struct Interrupt {
    /// Shared with the signal-watching thread, if any, and with every clone.
    inner: Arc<Inner>,
}

/// The clones' common part; dropping it stops the signal-watching thread.
struct Inner {
    /// The flag and the pending actions; the signal thread holds this too
    /// (not `Inner`, so that dropping the last `Interrupt` ends that thread).
    state: Arc<Mutex<State>>,
    /// Closes the signal iterator of [`Interrupt::on_sigint`]'s thread.
    watcher: Option<Handle>,
}

/// An action waiting for the interrupt.
type Action = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct State {
    /// True once fired; never reset.
    fired: bool,
    /// What to run when it fires, each under the number of its registration.
    actions: Vec<(u64, Action)>,
    /// The number the next registration gets.
    next: u64,
}

/// Keeps an action of [`Interrupt::on_interrupt`] registered: dropping it
/// drops the action unrun (if the interrupt has not fired yet), with
/// whatever the action holds.
#[must_use = "dropping the registration drops the action"]
pub struct Registration {
    /// The interrupt's state, to take the action out of.
    state: Arc<Mutex<State>>,
    /// The action's number; `None` once it ran (or was run at once).
    id: Option<u64>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            let action = {
                let mut state = lock(&self.state);
                let at = state.actions.iter().position(|(n, _)| *n == id);
                at.map(|at| state.actions.swap_remove(at))
            };
            // Dropped outside the lock: what it holds may take its time.
            drop(action);
        }
    }
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("id", &self.id)
            .finish()
    }
}

impl Interrupt {
    /// An interrupt that fires only when [`trigger`](Self::trigger) is
    /// called: for tests, and for library callers with their own way to
    /// cancel.
    pub fn manual() -> Self {
        Interrupt {
            inner: Arc::new(Inner {
                state: Arc::default(),
                watcher: None,
            }),
        }
    }

    /// An interrupt fired by SIGINT (Ctrl-C on a terminal in cooked mode),
    /// watched by a background thread that runs the registered actions.
    ///
    /// Once this is called, SIGINT no longer kills the process, even after the
    /// interrupt is dropped (the watching thread then ends).
    ///
    /// # Errors
    ///
    /// When the signal handler cannot be installed.
    pub fn on_sigint() -> io::Result<Self> {
        let mut signals = Signals::new([SIGINT])?;
        let watcher = signals.handle();
        let state: Arc<Mutex<State>> = Arc::default();
        let shared = Arc::clone(&state);
        thread::Builder::new()
            .name("upecho-sigint".into())
            .spawn(move || {
                if signals.forever().next().is_some() {
                    fire(&shared);
                }
            })?;
        Ok(Interrupt {
            inner: Arc::new(Inner {
                state,
                watcher: Some(watcher),
            }),
        })
    }

    /// Fires the interrupt: sets the flag and runs the registered actions.
    /// Firing again does nothing.
    pub fn trigger(&self) {
        fire(&self.inner.state);
    }

    /// Returns true if and only if SIGINT fires this interrupt (it came from
    /// [`on_sigint`](Self::on_sigint)), so a SIGINT cannot kill the process.
    pub fn handles_sigint(&self) -> bool {
        self.inner.watcher.is_some()
    }

    /// Returns true if and only if the interrupt has fired.
    pub fn is_interrupted(&self) -> bool {
        lock(&self.inner.state).fired
    }

    /// Registers `action` to run (on the firing thread) when the interrupt
    /// fires, for as long as the returned [`Registration`] lives; runs it now
    /// if the interrupt already fired.
    pub fn on_interrupt(&self, action: impl FnOnce() + Send + 'static) -> Registration {
        let mut state = lock(&self.inner.state);
        let id = if state.fired {
            drop(state);
            action();
            None
        } else {
            let id = state.next;
            state.next += 1;
            state.actions.push((id, Box::new(action)));
            Some(id)
        };
        Registration {
            state: Arc::clone(&self.inner.state),
            id,
        }
    }

    /// Makes the interrupt shut `stream` down in both directions, so that a
    /// thread blocked reading or writing it returns at once, while the
    /// returned [`Registration`] lives (it holds a duplicate of the stream:
    /// drop it with the session).
    ///
    /// # Errors
    ///
    /// When the stream's handle cannot be duplicated.
    pub fn shut_down_on_interrupt<S: Duplex>(&self, stream: &S) -> io::Result<Registration> {
        let stream = stream.try_clone()?;
        Ok(self.on_interrupt(move || {
            // The connection may already be gone; either way it is shut.
            let _ = stream.shutdown_both();
        }))
    }

    /// Runs `work` on a helper thread and waits for it, unless the interrupt
    /// fires first: `Some(result)`, or `None` when interrupted.
    ///
    /// For a blocking call that cannot be woken otherwise, such as a TCP
    /// connect. When interrupted, the helper thread is left to finish on its
    /// own; its result is dropped. A panic in `work` is resumed here.
    pub fn run<T, F>(&self, work: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        if self.is_interrupted() {
            return None;
        }
        let (done, outcome) = mpsc::channel();
        let woken = done.clone();
        let _registered = self.on_interrupt(move || {
            let _ = woken.send(None);
        });
        thread::spawn(move || {
            let result = panic::catch_unwind(AssertUnwindSafe(work));
            let _ = done.send(Some(result));
        });
        // The registered action keeps a sender alive, so `recv` cannot fail
        // before one of the two has sent.
        match outcome.recv().ok().flatten()? {
            Ok(value) => Some(value),
            Err(payload) => panic::resume_unwind(payload),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(watcher) = &self.watcher {
            watcher.close();
        }
    }
}

impl std::fmt::Debug for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interrupt")
            .field("interrupted", &self.is_interrupted())
            .field("on_sigint", &self.inner.watcher.is_some())
            .finish()
    }
}

/// Sets the flag, then runs the pending actions outside the lock (an action
/// may itself look at the interrupt).
fn fire(state: &Mutex<State>) {
    let actions = {
        let mut state = lock(state);
        state.fired = true;
        std::mem::take(&mut state.actions)
    };
    for (_, action) in actions {
        action();
    }
}

/// The state stays consistent even if a holder panicked: it is a flag and a
/// list, each changed in one step.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn actions_run_once_when_fired_and_at_once_after() {
        let interrupt = Interrupt::manual();
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&runs);
        let _kept = interrupt.on_interrupt(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let counter = Arc::clone(&runs);
        drop(interrupt.on_interrupt(move || {
            counter.fetch_add(100, Ordering::SeqCst);
        }));
        assert!(!interrupt.is_interrupted());
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        interrupt.trigger();
        interrupt.trigger();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let counter = Arc::clone(&runs);
        drop(interrupt.on_interrupt(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn run_returns_the_result_when_not_interrupted() {
        let interrupt = Interrupt::manual();
        assert_eq!(interrupt.run(|| 42), Some(42));
        interrupt.trigger();
        assert_eq!(interrupt.run(|| 42), None);
    }

    #[test]
    fn a_finished_run_leaves_nothing_registered() {
        let interrupt = Interrupt::manual();
        for n in 0..1000 {
            assert_eq!(interrupt.run(move || n), Some(n));
        }
        assert_eq!(lock(&interrupt.inner.state).actions.len(), 0);
    }

    #[test]
    fn a_dropped_shutdown_registration_releases_its_duplicate_of_the_stream() {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let interrupt = Interrupt::manual();
        drop(interrupt.shut_down_on_interrupt(&client).unwrap());
        drop(client);
        // The last descriptor of the client's socket is closed: EOF.
        assert_eq!(server.read(&mut [0u8; 1]).unwrap(), 0);
        assert!(!interrupt.is_interrupted());
    }

    #[test]
    fn shutting_down_on_interrupt_wakes_a_blocked_read() {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let _server = listener.accept().unwrap();
        let interrupt = Interrupt::manual();
        let _kept = interrupt.shut_down_on_interrupt(&client).unwrap();
        let firing = interrupt.clone();
        let trigger = thread::spawn(move || firing.trigger());
        let mut buf = [0u8; 1];
        assert_eq!(client.read(&mut buf).unwrap(), 0);
        trigger.join().unwrap();
    }
}
