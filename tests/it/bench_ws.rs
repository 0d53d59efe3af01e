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
fn with_unicode_messages_are_text_and_a_stream_cut_inside_a_character_still_checks() {
    // A text message that is not whole characters would be closed with 1007
    // (an error here): the stream's writes, cut to the room they have, keep
    // a cut character's first bytes for the next message.
    let server = ServerProcess::start(&["--ws", "127.0.0.1:0", "--transform", "unicode", "-v"], 1);
    let url = format!("ws://{}/", server.addr());
    for extra in [
        &["--size", "1000"][..],
        &["--mode", "stream", "--size", "100001", "--connections", "2"],
    ] {
        let mut target = vec!["--ws", url.as_str(), "--transform", "unicode"];
        target.extend_from_slice(extra);
        let report = assert_passes(&bench_to("0.5", &target, &[]));
        assert_eq!(count(&report, "errors"), 0, "{report}");
    }
    assert!(
        !server
            .stderr_so_far()
            .iter()
            .any(|l| l.contains("ws_protocol")),
        "no 1007"
    );
}

#[test]
fn a_server_that_is_not_websocket_is_one_error_line() {
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
