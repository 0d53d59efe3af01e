//! The page of `serve --ws` in a real browser: headless Chromium (Debian's
//! `chromium`) driven by playwright-core (`tests/browser/page.mjs`, installed
//! by `.ci/run` with `npm ci`) types lines at the `>>: ` prompt with the
//! keyboard alone and reads the upper-cased replies off the page, over `ws`
//! and over `wss` with the temporary certificate.

use std::path::Path;
use std::process::Command;

use crate::support::{ServerProcess, TempDir};

/// Runs `page.mjs` against `url`, typing `lines`, with a screenshot saved to
/// `screenshot`; its JSON report, or `None` (after saying why, outside CI)
/// when Chromium or playwright-core is missing.
fn drive(url: &str, screenshot: &str, lines: &[&str]) -> Option<serde_json::Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !Path::new("/usr/bin/chromium").exists()
        || !dir.join("node_modules/playwright-core").exists()
    {
        crate::support::skip(
            "the browser test",
            "needs /usr/bin/chromium and `npm ci --prefix tests/browser`",
        );
        return None;
    }
    let out = Command::new("timeout")
        .args(["120", "node", "page.mjs", url, screenshot])
        .args(lines)
        .current_dir(&dir)
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "page.mjs {url}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("page.mjs prints JSON"))
}

#[test]
fn a_person_types_at_the_prompt_and_reads_the_reply_over_ws_and_wss() {
    let server = ServerProcess::start(&["--ws", "127.0.0.1:0", "--wss", "127.0.0.1:0"], 2);
    let dir = TempDir::new();
    let urls = [
        format!("http://{}/", server.addrs[0]),
        format!("https://{}/", server.addrs[1]),
    ];
    for url in urls {
        let shot = dir.path("page.png");
        let Some(report) = drive(&url, &shot, &["hello, browser", "straße ok"]) else {
            return;
        };
        assert_eq!(report["state"], "open", "{url}: {report}");
        assert_eq!(
            report["focused"], "line",
            "the prompt has the focus: {report}"
        );
        assert_eq!(report["label"], ">>:", "the prompt is labelled: {report}");
        assert_eq!(
            report["problems"],
            serde_json::json!([]),
            "no console errors (CSP): {report}"
        );
        let replies = report["replies"].as_array().expect("replies");
        let texts: Vec<&str> = replies
            .iter()
            .map(|r| r["text"].as_str().unwrap())
            .collect();
        assert_eq!(texts, ["HELLO, BROWSER", "STRAßE OK"], "{url}: {report}");
        for reply in replies {
            let rtt = reply["rtt"].as_str().unwrap_or_default();
            assert!(
                rtt.starts_with('(') && rtt.ends_with(" ms)"),
                "a round-trip time: {report}"
            );
        }
        let png = std::fs::read(&shot).expect("a screenshot");
        assert!(
            png.starts_with(b"\x89PNG"),
            "{url}: the screenshot is a PNG"
        );
    }
}
