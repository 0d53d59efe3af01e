//! Ctrl-C for the client, delivered as a value. A SIGINT sets a flag and runs
//! the actions registered for it (shutting the connection down, so a blocked
//! read returns; waking a pending connect); the client loops then see the flag
//! and return [`Finish::Interrupted`](super::Finish::Interrupted), which `main`
//! turns into exit status 130. Nothing here ends the process.

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
/// once if it already has), and are kept until then.
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

#[derive(Default)]
struct State {
    /// True once fired; never reset.
    fired: bool,
    /// What to run when it fires.
    actions: Vec<Box<dyn FnOnce() + Send>>,
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
    /// fires, or runs it now if it already has.
    pub fn on_interrupt(&self, action: impl FnOnce() + Send + 'static) {
        let mut state = lock(&self.inner.state);
        if state.fired {
            drop(state);
            action();
        } else {
            state.actions.push(Box::new(action));
        }
    }

    /// Makes the interrupt shut `stream` down in both directions, so that a
    /// thread blocked reading or writing it returns at once.
    ///
    /// # Errors
    ///
    /// When the stream's handle cannot be duplicated.
    pub fn shut_down_on_interrupt<S: Duplex>(&self, stream: &S) -> io::Result<()> {
        let stream = stream.try_clone()?;
        self.on_interrupt(move || {
            // The connection may already be gone; either way it is shut.
            let _ = stream.shutdown_both();
        });
        Ok(())
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
        self.on_interrupt(move || {
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
    for action in actions {
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
        interrupt.on_interrupt(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        assert!(!interrupt.is_interrupted());
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        interrupt.trigger();
        interrupt.trigger();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let counter = Arc::clone(&runs);
        interrupt.on_interrupt(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
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
    fn shutting_down_on_interrupt_wakes_a_blocked_read() {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let _server = listener.accept().unwrap();
        let interrupt = Interrupt::manual();
        interrupt.shut_down_on_interrupt(&client).unwrap();
        let firing = interrupt.clone();
        let trigger = thread::spawn(move || firing.trigger());
        let mut buf = [0u8; 1];
        assert_eq!(client.read(&mut buf).unwrap(), 0);
        trigger.join().unwrap();
    }
}
