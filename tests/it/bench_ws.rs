//! `upecho bench --ws URL`: pingpong, stream, `--rate` and connect mode over
//! WebSocket (each write one binary message), every reply byte checked, over
//! `ws://` and `wss://`.

use crate::bench::{bench_to, count};
use crate::support::{ServerProcess, assert_one_error_line, assert_passes, json};

#[test]
fn every_mode_runs_over_ws_and_wss_with_every_reply_checked() {
    let server = ServerProcess::start(&["--ws", "127.0.0.1:0", "--wss", "127.0.0.1:0"], 2);
    let ws = format!("ws://{}/bench", server.addrs[0]);
    let wss = format!("wss://{}/", server.addrs[1]);
    let runs: [(&str, &[&str], &str); 5] = [
        (&ws, &["--connections", "4"], "ws"),
        (
            &ws,
            &["--mode", "stream", "--size", "65536", "--connections", "2"],
            "ws",
        ),
        (&ws, &["--rate", "200", "--connections", "2"], "ws"),
        (&ws, &["--mode", "connect"], "ws"),
        (
            &wss,
            &["--insecure", "--connections", "2", "--size", "100000"],
            "wss",
        ),
    ];
    for (url, extra, transport) in runs {
        let mut target = vec!["--ws", url];
        target.extend_from_slice(extra);
        let report = assert_passes(&bench_to("0.5", &target, &[]));
        assert_eq!(report["transport"], transport, "{report}");
        assert!(
            count(&report, "requests") > 0 || count(&report, "bytes") > 0,
            "{report}"
        );
        assert_eq!(count(&report, "errors"), 0, "{report}");
    }
}

#[test]
fn a_websocket_server_that_does_not_upper_case_fails_the_check() {
    let server = ServerProcess::start(&["--ws", "127.0.0.1:0", "--transform", "none"], 1);
    let url = format!("ws://{}/", server.addr());
    let out = bench_to("0.3", &["--ws", &url], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report = json(&out);
    assert!(count(&report, "errors") > 0, "{report}");
}

#[test]
fn ws_stream_with_unicode_and_a_server_that_is_not_websocket_are_one_error_line() {
    let out = bench_to(
        "0.3",
        &[
            "--ws",
            "ws://127.0.0.1:9/",
            "--mode",
            "stream",
            "--transform",
            "unicode",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        assert_one_error_line(&out).contains("use pingpong"),
        "{out:?}"
    );
    let tcp = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    let url = format!("ws://{}/", tcp.addr());
    let out = bench_to("0.3", &["--ws", &url], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = assert_one_error_line(&out);
    assert!(
        line.starts_with(&format!("error: cannot connect to ws {}:", tcp.addr())),
        "{line}"
    );
    assert!(line.contains("websocket handshake"), "{line}");
}
