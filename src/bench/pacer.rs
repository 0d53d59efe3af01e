//! A fine clock for `--rate`: wakes a connection task when its next send is
//! due, to within tens of microseconds, where tokio's timer (a wheel of
//! 1 ms slots, and `epoll_wait` timeouts in whole milliseconds) would send
//! up to a millisecond late: at 10,000 messages per second that is ten
//! messages' worth of schedule.
//!
//! One per generator thread: a `timerfd` (the kernel's high-resolution
//! timer, registered with the runtime like a socket) armed for the earliest
//! send due, and a heap of the tasks waiting. The pacer's own task reads
//! the timer when it fires, wakes every task now due, and re-arms it for the
//! next. A send already due costs nothing: [`Pacer::until`] is ready at
//! once, without a system call.

use std::cell::{Cell, RefCell};
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

/// How early a send may be woken and still count as due: less than the
/// wake-up itself costs, so waking earlier would only add a second wake-up.
pub const EARLY: Duration = Duration::from_micros(2);

/// How long before a send is due the timer wakes its task, which then spins
/// for the rest: waking from `epoll_wait` on a timer takes some 60 µs here
/// (median lateness of timer-woken sends at 1,000 per second, 285 µs at
/// p99), more than the 100 µs a send may be late.
pub const SPIN: Duration = Duration::from_micros(100);

/// The timer, as the runtime registers it.
struct Timer(TimerFd);

impl AsRawFd for Timer {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// A task waiting for its time.
struct Waiting {
    at: Instant,
    waker: Waker,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for Waiting {}

impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> Ordering {
        self.at.cmp(&other.at)
    }
}

/// One generator thread's fine clock.
pub struct Pacer {
    timer: AsyncFd<Timer>,
    waiting: RefCell<BinaryHeap<Reverse<Waiting>>>,
    /// When the timer is armed to fire, if it is.
    armed: Cell<Option<Instant>>,
}

impl Pacer {
    /// A pacer on the current runtime. It does nothing until [`Pacer::run`]
    /// runs as a task of its own.
    ///
    /// It also asks the kernel for no timer slack on this thread: the
    /// default 50 µs would be added to every wake-up of the runtime's own
    /// timeouts.
    ///
    /// # Errors
    ///
    /// When the timer cannot be created or registered.
    ///
    /// Why the deprecated `AsyncFd::new`: as for the UDP sockets (see
    /// `connect::register`), the `AsyncFd` owns the timer, which owns its
    /// descriptor, and deregisters it before closing it.
    #[allow(deprecated)]
    pub fn new() -> io::Result<Pacer> {
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        // The slack only makes wake-ups later, so failing to lower it is not
        // worth failing the run for.
        let _ = nix::sys::prctl::set_timerslack(1);
        Ok(Pacer {
            timer: AsyncFd::new(Timer(timer))?,
            waiting: RefCell::new(BinaryHeap::new()),
            armed: Cell::new(None),
        })
    }

    /// Ready at `at` (or [`EARLY`] before it).
    pub fn until(&self, at: Instant) -> Until<'_> {
        Until {
            pacer: self,
            at,
            registered: false,
        }
    }

    /// Wakes the tasks whose time has come, as the timer fires, until the
    /// run ends (the task is aborted with the connections').
    ///
    /// # Errors
    ///
    /// When the timer cannot be read or set, which does not happen to a
    /// working timerfd.
    pub async fn run(&self) -> io::Result<()> {
        loop {
            let mut ready = self.timer.readable().await?;
            match ready.get_inner().0.wait() {
                // Expired: no more readiness until the next expiry.
                Ok(()) => ready.clear_ready(),
                Err(nix::errno::Errno::EAGAIN) => {
                    ready.clear_ready();
                    continue;
                }
                Err(errno) => return Err(errno.into()),
            }
            self.armed.set(None);
            let now = Instant::now();
            let mut waiting = self.waiting.borrow_mut();
            while let Some(Reverse(next)) = waiting.peek() {
                if next.at > now + SPIN {
                    let at = next.at;
                    drop(waiting);
                    self.arm(at)?;
                    break;
                }
                let Some(Reverse(due)) = waiting.pop() else {
                    break;
                };
                due.waker.wake();
            }
        }
    }

    /// Adds a task waiting for `at`, arming the timer if it is now the
    /// earliest.
    fn wait_for(&self, at: Instant, waker: &Waker) -> io::Result<()> {
        self.waiting.borrow_mut().push(Reverse(Waiting {
            at,
            waker: waker.clone(),
        }));
        if self.armed.get().is_none_or(|armed| at < armed) {
            self.arm(at)?;
        }
        Ok(())
    }

    /// Arms the timer for [`SPIN`] before `at` (a time past is armed 1 ns
    /// ahead: zero would disarm it).
    fn arm(&self, at: Instant) -> io::Result<()> {
        let wait = at
            .saturating_duration_since(Instant::now() + SPIN)
            .max(Duration::from_nanos(1));
        self.timer.get_ref().0.set(
            Expiration::OneShot(TimeSpec::from(wait)),
            TimerSetTimeFlags::empty(),
        )?;
        self.armed.set(Some(at));
        Ok(())
    }
}

/// The future of [`Pacer::until`].
pub struct Until<'a> {
    pacer: &'a Pacer,
    at: Instant,
    /// The pacer holds this task's waker for `at`: polled again before then
    /// (another branch of its `select!` woke it), it waits as it was.
    registered: bool,
}

impl Future for Until<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let now = Instant::now();
        if now + EARLY >= self.at {
            return Poll::Ready(());
        }
        if now + SPIN >= self.at {
            while Instant::now() + EARLY < self.at {
                std::hint::spin_loop();
            }
            return Poll::Ready(());
        }
        if !self.registered {
            // A timer that cannot be set is a broken system; sending now
            // (late or early) is better than never.
            if self.pacer.wait_for(self.at, cx.waker()).is_err() {
                return Poll::Ready(());
            }
            self.registered = true;
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_each_waiter_at_its_time_in_order() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let tasks = tokio::task::LocalSet::new();
        tasks.block_on(&runtime, async {
            let pacer = std::rc::Rc::new(Pacer::new().unwrap());
            let clock = tokio::task::spawn_local({
                let pacer = std::rc::Rc::clone(&pacer);
                async move { pacer.run().await }
            });
            let start = Instant::now();
            let times = [3u64, 1, 2].map(|ms| start + Duration::from_millis(ms));
            let woke = std::rc::Rc::new(RefCell::new(Vec::new()));
            let mut waiters = Vec::new();
            for at in times {
                let (pacer, woke) = (std::rc::Rc::clone(&pacer), std::rc::Rc::clone(&woke));
                waiters.push(tokio::task::spawn_local(async move {
                    pacer.until(at).await;
                    let now = Instant::now();
                    assert!(now + EARLY >= at, "woken early");
                    woke.borrow_mut().push(at);
                }));
            }
            for waiter in waiters {
                waiter.await.unwrap();
            }
            let mut sorted = times.to_vec();
            sorted.sort();
            assert_eq!(*woke.borrow(), sorted);
            clock.abort();
        });
    }
}
