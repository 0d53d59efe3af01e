//! `upecho bench --mode connect`: each connection, again and again, connects,
//! makes one verified exchange and closes; the figures are cycles per second
//! and the percentiles of the cycle and of the connect alone. `--source`
//! spreads the local ends over addresses, and running out of local ports is
//! one error line that names the cause.

use crate::bench::{bench_to, count};
use crate::support::{
    ServerProcess, TempDir, assert_one_error_line, assert_passes, in_own_network_namespace, run,
    skip,
};

/// The server's log lines for connections it opened.
fn opened(server: &ServerProcess) -> Vec<String> {
    server
        .stderr_so_far()
        .into_iter()
        .filter(|line| line.contains("connection opened"))
        .collect()
}

#[test]
fn connect_mode_over_tcp_unix_and_tls_counts_cycles_and_times_the_connect_apart() {
    let dir = TempDir::new();
    let path = dir.path("churn.sock");
    let tcp = ServerProcess::start(&["--tcp", "127.0.0.1:0", "-v"], 1);
    let unix = ServerProcess::start(&["--unix", &path, "-v"], 1);
    let tls = ServerProcess::start(&["--tls", "127.0.0.1:0", "-v"], 1);
    let (tcp_addr, tls_addr) = (tcp.addr_arg(), tls.addr_arg());
    for (server, target) in [
        (&tcp, vec![tcp_addr.as_str()]),
        (&unix, vec!["--unix", path.as_str()]),
        (&tls, vec![tls_addr.as_str(), "--tls", "--insecure"]),
    ] {
        let args = ["--mode", "connect", "--connections", "2"];
        let report = assert_passes(&bench_to("0.5", &target, &args));
        assert_eq!(report["mode"], "connect", "{report}");
        let cycles = report["requests"].as_u64().unwrap();
        assert!(cycles > 0, "{report}");
        // A cycle is a connection: one per request, and the server saw each.
        assert_eq!(
            report["connects_per_s"], report["requests_per_s"],
            "{report}"
        );
        let seen = opened(server).len() as u64;
        assert!(seen >= cycles, "{seen} connections opened, {report}");
        // The connect is part of the cycle, so each of its percentiles is at
        // most the cycle's.
        let (p50, p99, max) = (
            count(&report, "connect_p50_us"),
            count(&report, "connect_p99_us"),
            count(&report, "connect_max_us"),
        );
        assert!(p50 <= p99 && p99 <= max, "{report}");
        assert!(p50 <= count(&report, "p50_us"), "{report}");
        assert!(p99 <= count(&report, "p99_us"), "{report}");
        assert!(
            report["client_cpu_us_per_op"].as_f64().unwrap() > 0.0,
            "{report}"
        );
    }
}

#[test]
fn connect_mode_at_a_fixed_rate_opens_that_many_connections_a_second() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    let args = ["--mode", "connect", "--connections", "4", "--rate", "200"];
    let report = assert_passes(&bench_to("2", &[&server.addr_arg()], &args));
    assert_eq!(report["rate"], 200.0, "{report}");
    for field in ["achieved_rate", "connects_per_s"] {
        let rate = report[field].as_f64().unwrap();
        assert!((170.0..=230.0).contains(&rate), "{field}: {report}");
    }
    assert!(
        report["uncorrected"]["p99_us"].as_u64().is_some(),
        "{report}"
    );
}

#[test]
fn source_addresses_are_used_in_turn_for_the_local_end() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0", "-v"], 1);
    let args = [
        "--mode",
        "connect",
        "--source",
        "127.0.0.2",
        "--source",
        "127.0.0.3",
    ];
    assert_passes(&bench_to("0.3", &[&server.addr_arg()], &args));
    let lines = opened(&server);
    let from = |ip: &str| {
        lines
            .iter()
            .filter(|line| line.contains(&format!("peer={ip}:")))
            .count()
    };
    let (two, three) = (from("127.0.0.2"), from("127.0.0.3"));
    assert!(two >= 2 && three >= 2, "{lines:?}");
    // In turn: neither address takes more than its share, give or take the
    // connection that was opening when the run ended and the first probe.
    assert!(two.abs_diff(three) <= 2, "{two} from .2, {three} from .3");
    assert_eq!(from("127.0.0.1"), 0, "{lines:?}");
}

#[test]
fn running_out_of_local_ports_is_one_error_line_naming_the_port_range() {
    // In a namespace of its own, whose port range is its own: two ports for
    // four connections to one server.
    let ran = in_own_network_namespace(|| {
        std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", "40000 40001")
            .expect("set the namespace's port range");
        let server = ServerProcess::start(&["--tcp", "127.0.0.1:0", "-q"], 1);
        let args = ["--mode", "connect", "--connections", "4"];
        let out = bench_to("2", &[&server.addr_arg()], &args);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let line = assert_one_error_line(&out);
        assert!(line.contains("out of local ports"), "{line}");
        assert!(
            line.contains("net.ipv4.ip_local_port_range is 40000-40001"),
            "{line}"
        );
        assert!(line.contains("--source"), "{line}");
    });
    if let Err(why) = ran {
        skip(
            "running_out_of_local_ports_is_one_error_line_naming_the_port_range",
            &why,
        );
    }
}

#[test]
fn connect_mode_and_source_misuse_are_usage_errors() {
    for (args, says) in [
        (
            &["bench", "--udp", "127.0.0.1:9", "--mode", "connect"][..],
            "--mode connect cannot be used with --udp",
        ),
        (
            &["bench", "--unix", "x.sock", "--source", "127.0.0.2"][..],
            "'--unix <PATH>' cannot be used with '--source <ADDR>'",
        ),
        (
            &["bench", "127.0.0.1:9", "--source", "nonsense"][..],
            "'nonsense' is not an IP address",
        ),
        (
            &["bench", "127.0.0.1:9", "--source", "::1"][..],
            "--source ::1 is an IPv6 address, but the server 127.0.0.1:9 is IPv4",
        ),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let line = assert_one_error_line(&out);
        assert!(line.contains(says), "{args:?}: {line}");
    }
}
