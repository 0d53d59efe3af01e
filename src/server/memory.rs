//! Giving memory back to the operating system after a crowd of connections
//! has gone.
//!
//! Why: an open connection costs the server about 1.5 KiB (its task, its
//! socket's registration, the listener's record of it), in many small heap
//! blocks. When the connections close, glibc's allocator keeps those blocks
//! for reuse instead of returning the pages, so a server that once held
//! 10,000 connections stayed 13-16 MiB above its starting size, a little more
//! each round (`peers/conn_memory.py`). `malloc_trim(0)` returns the free
//! pages; measured by calling it from gdb after 2 x 10,000 connections: RSS
//! fell from about 17 MiB to 6.4 MiB (4.0 MiB at start).

use std::sync::atomic::{AtomicUsize, Ordering};

/// Closed connections after which the free pages are worth returning: about
/// 1.5 MiB of small blocks.
const TRIM_AFTER_CLOSES: usize = 1024;

/// Counts connection closes across every thread and trims now and then.
#[derive(Debug, Default)]
pub(crate) struct Reclaim {
    /// Connections closed since the last trim.
    closed: AtomicUsize,
}

impl Reclaim {
    /// Records that a connection closed.
    pub(crate) fn closed(&self) {
        self.closed.fetch_add(1, Ordering::Relaxed);
    }

    /// Records that a connection freed the buffers of a phase it is done
    /// with (a WebSocket's HTTP phase: some 16 KiB, in blocks between those
    /// it keeps), which counts as a close does.
    pub(crate) fn phase_ended(&self) {
        self.closed();
    }

    /// Returns free heap pages to the system if enough connections closed
    /// since the last time. Called on the listeners' periodic tick (at most
    /// once a second per listener and thread), never per message.
    pub(crate) fn maybe_trim(&self) {
        if self.closed.load(Ordering::Relaxed) < TRIM_AFTER_CLOSES {
            return;
        }
        // One thread trims; the others see the count reset.
        if self.closed.swap(0, Ordering::Relaxed) >= TRIM_AFTER_CLOSES {
            trim();
        }
    }
}

/// Asks the allocator to return every free page it holds.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() {
    // SAFETY: malloc_trim takes a plain integer, touches only the
    // allocator's own free lists under its own locks, and is safe to call
    // from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators return memory on their own.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
