//! The command line's conventions: exit statuses and one-line errors.

use crate::support::{assert_one_error_line, run};

#[test]
fn version_flag_prints_name_and_version() {
    let out = run(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("upecho {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bad_address_is_a_usage_error_with_exit_2() {
    for addr in ["127.0.0.1", "localhost:99999", "[::1]8080", "300.1.1.1:80"] {
        let out = run(&["serve", "--tcp", addr]);
        assert_eq!(out.status.code(), Some(2), "{addr}");
        let line = assert_one_error_line(&out);
        assert!(line.contains(addr), "names the address: {line}");
    }
    let out = run(&["connect", "nonsense"]);
    assert_eq!(out.status.code(), Some(2));
    assert_one_error_line(&out);
}

#[test]
fn unknown_flag_is_a_usage_error_with_exit_2() {
    let out = run(&["serve", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    let line = assert_one_error_line(&out);
    assert!(line.contains("--bogus"), "{line}");
}

#[test]
fn bad_duration_is_a_usage_error_with_exit_2() {
    let out = run(&["serve", "--shutdown-grace", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    let line = assert_one_error_line(&out);
    assert!(line.contains("--shutdown-grace"), "{line}");
}
