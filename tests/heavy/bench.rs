//! `upecho bench` at scale: thousands of connections and 16 MiB messages in
//! bounded memory.

use crate::exclusive;
use crate::support::{PATIENCE, ServerProcess, assert_passes, run_measuring_peak};

#[test]
fn thousands_of_connections_open_before_the_window_in_little_memory() {
    let _serial = exclusive();
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    let (out, peak_kib) = run_measuring_peak(&[
        "bench",
        &server.addr_arg(),
        "--connections",
        "2000",
        "--duration",
        "1",
        "--warmup",
        "0.5",
        "--json",
    ]);
    let report = assert_passes(&out);
    assert_eq!(report["starved"], 0, "{report}");
    let setup = report["setup_s"].as_f64().unwrap();
    assert!(setup > 0.0 && setup < PATIENCE.as_secs_f64(), "{report}");
    // About 2 KiB per connection (the old bench kept a 150 KiB histogram each:
    // 300 MB here).
    assert!(peak_kib < 40 * 1024, "peak RSS {peak_kib} KiB");
}

#[test]
fn sixteen_mib_messages_keep_the_payload_under_80_mib() {
    let _serial = exclusive();
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    for mode in ["pingpong", "stream"] {
        let (out, peak_kib) = run_measuring_peak(&[
            "bench",
            &server.addr_arg(),
            "--mode",
            mode,
            "--size",
            "16777216",
            "--duration",
            "0.5",
            "--warmup",
            "0.1",
            "--json",
        ]);
        assert_passes(&out);
        // The old bench held about 3 GiB of messages at this size.
        assert!(peak_kib < 120 * 1024, "{mode}: peak RSS {peak_kib} KiB");
    }
}

#[test]
#[ignore = "open: now and then a few connections get no reply for the whole run (debug builds, after the other heavy tests); run with --ignored"]
fn hundreds_of_connections_streaming_16_mib_writes_are_all_answered() {
    // Defect 3.10: `--size 16777216 --connections 2000 --mode stream` against
    // a healthy server reported "all 2000 connections starved". Each
    // connection's first write put about 4 MB in the kernel's buffers, past
    // `net.ipv4.tcp_mem`; the kernel dropped segments and replies took
    // seconds. With 500 connections (before the fix): 500, then 171 starved,
    // at 22 MB/s.
    let _serial = exclusive();
    // Open, so ignored in CI: run after the other heavy tests, now and then
    // some connections (debug builds) get no reply for the whole run: 32 to
    // 287 of 500, and once 5 of 300, with the kernel's TCP memory near idle
    // before; alone, or with release builds, it passed every time. Not
    // understood yet (fairness of bench's stream tasks or of the server?).
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    let (out, _) = run_measuring_peak(&[
        "bench",
        &server.addr_arg(),
        "--mode",
        "stream",
        "--size",
        "16777216",
        // 300: the bench before the in-flight bound (4ec5f4b) reported 223 of
        // 300 starved and 0 requests in a 2 s window against a release
        // server, though 0 starved in one of 4 s.
        "--connections",
        "300",
        "--duration",
        "4",
        "--json",
    ]);
    let report = assert_passes(&out);
    assert_eq!(report["starved"], 0, "{report}");
    assert!(report["requests"].as_u64().unwrap() > 0, "{report}");
}
