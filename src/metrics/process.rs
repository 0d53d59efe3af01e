//! The standard `process_*` metrics of the running process (CPU time,
//! memory, descriptors, start time), read from `/proc/self` through `procfs`
//! at each scrape and appended to the registry's text.

use std::fmt::Write as _;

use procfs::process::{LimitValue, Process};

/// Appends the `process_*` metrics, read now. Where a figure cannot be read,
/// its metric is left out rather than shown wrong.
pub(super) fn append(text: &mut String) {
    let mut put = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = write!(
            text,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    };
    let Ok(me) = Process::myself() else { return };
    // The kernel's clock tick (USER_HZ), asked of the system, not assumed.
    let ticks = procfs::ticks_per_second() as f64;
    if let Ok(stat) = me.stat() {
        put(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            (stat.utime + stat.stime) as f64 / ticks,
        );
        put(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            (stat.rss * procfs::page_size()) as f64,
        );
        put(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            stat.vsize as f64,
        );
        if let Ok(boot) = procfs::boot_time_secs() {
            put(
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                boot as f64 + stat.starttime as f64 / ticks,
            );
        }
    }
    if let Ok(open) = me.fd_count() {
        put(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            open as f64,
        );
    }
    if let Ok(limits) = me.limits()
        && let LimitValue::Value(max) = limits.max_open_files.soft_limit
    {
        put(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            max as f64,
        );
    }
}
