//! The command line's conventions (exit statuses and one-line errors), the
//! helper subcommands `completions` and `man`, and the defaults `--help` shows.

use std::process::Stdio;

use crate::support::{PATIENCE, assert_one_error_line, exit_and_stderr, run, upecho};

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

#[test]
fn completions_print_a_script_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = run(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {out:?}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(!script.trim().is_empty(), "{shell}: empty script");
        assert!(script.contains("upecho"), "{shell}: {script}");
        assert!(script.contains("serve"), "{shell}: {script}");
        // fish writes long flags without their dashes (`-l max-connections`).
        assert!(script.contains("max-connections"), "{shell}: {script}");
        assert!(out.stderr.is_empty(), "{shell}: {out:?}");
    }
}

#[test]
fn completions_for_an_unknown_shell_is_a_usage_error_with_exit_2() {
    let out = run(&["completions", "nosuchshell"]);
    assert_eq!(out.status.code(), Some(2));
    let line = assert_one_error_line(&out);
    assert!(line.contains("nosuchshell"), "{line}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn man_prints_one_roff_page_with_every_subcommand_and_its_flags() {
    let out = run(&["man"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        page.starts_with(".TH") || page.starts_with(".ie"),
        "not a roff header: {page}"
    );
    for subcommand in ["serve", "connect", "bench", "completions", "man"] {
        let heading = format!(".SH \"UPECHO {}\"", subcommand.to_uppercase());
        assert_eq!(page.matches(&heading).count(), 1, "{heading} in {page}");
    }
    // roff escapes the dashes of flags (`\-\-backlog`).
    for flag in ["backlog", "max\\-connections", "timeout", "connections"] {
        assert!(
            page.contains(&format!("\\-\\-{flag}")),
            "--{flag} in {page}"
        );
    }
    assert!(page.contains("1024"), "the backlog's default in {page}");
    assert!(out.stderr.is_empty(), "{out:?}");
}

#[test]
fn man_has_exit_status_environment_and_examples_and_shows_each_flags_value() {
    let out = run(&["man"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let page = String::from_utf8_lossy(&out.stdout);
    for heading in [".SH \"EXIT STATUS\"", ".SH ENVIRONMENT", ".SH EXAMPLES"] {
        assert_eq!(page.matches(heading).count(), 1, "{heading} in {page}");
    }
    for variable in ["LISTEN_FDS", "LISTEN_PID", "NOTIFY_SOCKET"] {
        assert!(
            page.contains(&format!("\\fB{variable}\\fR")),
            "{variable} in {page}"
        );
    }
    for status in ["0", "1", "2", "130"] {
        assert!(
            page.contains(&format!(".TP\n\\fB{status}\\fR\n")),
            "exit {status} in {page}"
        );
    }
    // The synopsis names each flag's value, not only the flag.
    for flag in [
        "[\\fB\\-\\-tcp\\fR \\fIADDR\\fR]",
        "[\\fB\\-\\-unix\\fR \\fIPATH\\fR]",
    ] {
        assert!(page.contains(flag), "{flag} in {page}");
    }
}

#[test]
fn a_reader_that_went_away_ends_man_and_completions_quietly() {
    for args in [&["man"][..], &["completions", "bash"][..]] {
        let mut child = upecho(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // like `| head -c0`
        let (status, stderr) = exit_and_stderr(&mut child, PATIENCE, "upecho did not finish");
        assert_eq!(status.code(), Some(0), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}");
    }
}

#[test]
fn every_flag_with_a_default_shows_it_in_help() {
    // The contract's defaults (and the README's for --backlog and --seed).
    let expected: [(&str, &[(&str, &str)]); 3] = [
        (
            "serve",
            &[
                ("--tcp", "127.0.0.1:8080"),
                ("--unix-mode", "(default: the umask's)"),
                ("--transform", "[default: ascii]"),
                ("--backlog", "[default: 1024]"),
                ("--max-connections", "[default: 10000]"),
                ("--idle-timeout", "[default: 300]"),
                ("--shutdown-grace", "[default: 10]"),
                ("--verbose", "the default, info"),
                ("--quiet", "the default, info"),
            ],
        ),
        (
            "connect",
            &[
                ("[ADDR]", "[default: 127.0.0.1:8080]"),
                ("--timeout", "[default: 5]"),
            ],
        ),
        (
            "bench",
            &[
                ("[ADDR]", "[default: 127.0.0.1:8080]"),
                ("--mode", "[default: pingpong]"),
                ("--transform", "[default: ascii]"),
                ("--connections", "[default: 1]"),
                ("--size", "[default: 64]"),
                ("--duration", "[default: 10]"),
                ("--warmup", "[default: 1]"),
                ("--seed", "[default: 1]"),
            ],
        ),
    ];
    for (subcommand, defaults) in expected {
        let out = run(&[subcommand, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let help = String::from_utf8_lossy(&out.stdout);
        for (flag, default) in defaults {
            let entry = help_entry(&help, flag)
                .unwrap_or_else(|| panic!("{subcommand} --help lists no {flag}: {help}"));
            assert!(
                entry.contains(default),
                "{subcommand} {flag} shows no {default:?}: {entry:?}"
            );
        }
    }
}

/// The entry of `flag` (`--backlog`, `[ADDR]`) in a long `--help`: its
/// heading line and the indented lines under it, white space collapsed so
/// that wrapping does not matter.
fn help_entry(help: &str, flag: &str) -> Option<String> {
    // Entry headings are indented by a few spaces, their text by ten, and
    // section titles (`Options:`) not at all.
    let indent = |line: &str| line.len() - line.trim_start().len();
    let is_heading = |line: &str| !line.trim().is_empty() && (1..10).contains(&indent(line));
    let is_title = |line: &str| !line.trim().is_empty() && indent(line) == 0;
    let names_flag = |line: &str| {
        line.split(|c: char| c == ',' || c.is_whitespace())
            .any(|word| word.trim_end_matches("...") == flag)
    };
    let mut lines = help
        .lines()
        .skip_while(|line| !(is_heading(line) && names_flag(line)));
    let heading = lines.next()?;
    let body = lines.take_while(|line| !is_heading(line) && !is_title(line));
    let entry = std::iter::once(heading)
        .chain(body)
        .collect::<Vec<_>>()
        .join(" ");
    Some(entry.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[test]
fn completions_without_a_shell_is_a_usage_error_naming_it() {
    let out = run(&["completions"]);
    assert_eq!(out.status.code(), Some(2));
    let line = assert_one_error_line(&out);
    assert!(line.contains("<SHELL>"), "{line}");
}

#[test]
fn unix_mode_without_a_unix_socket_or_above_0777_is_a_usage_error() {
    let out = run(&["serve", "--tcp", "127.0.0.1:0", "--unix-mode", "600"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let line = assert_one_error_line(&out);
    assert!(
        line.contains("required") && line.contains("--unix <PATH>"),
        "{line}"
    );
    for mode in ["1777", "4755", "800", "rw"] {
        let out = run(&[
            "serve",
            "--unix",
            "/nonexistent/s.sock",
            "--unix-mode",
            mode,
        ]);
        assert_eq!(out.status.code(), Some(2), "{mode}: {out:?}");
        let line = assert_one_error_line(&out);
        assert!(
            line.contains("--unix-mode") && line.contains(mode),
            "{line}"
        );
    }
}
