//! The socket tutorial's own client logic, in Python, against upecho: it sends
//! without a newline and reads with one `recv(1024)`.

use std::process::Command;

use crate::support::{ServerProcess, run_with_input};

/// Returns a python3 command, or `None` (after saying why) when it is missing
/// outside CI. In CI a missing tool fails the test instead.
fn python() -> Option<Command> {
    let found = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(Command::new("python3"));
    }
    crate::support::skip("the tutorial client test", "python3 is not installed");
    None
}

#[test]
fn tutorial_client_gets_its_reply_without_a_newline() {
    let Some(mut py) = python() else { return };
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    let script = r#"
import socket, sys
host, port = sys.argv[1].rsplit(':', 1)
phone = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
phone.settimeout(30)
phone.connect((host, int(port)))
for msg in ['hello', 'has send==>', '你好 abc']:
    phone.send(msg.encode('utf-8'))
    data = phone.recv(1024)
    print(data.decode('utf-8'))
phone.close()
"#;
    py.args(["-c", script, &server.addr_arg()]);
    let out = run_with_input(py, b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "HELLO\nHAS SEND==>\n你好 ABC\n"
    );
}

#[test]
fn every_byte_value_matches_python_bytes_upper() {
    let Some(mut py) = python() else { return };
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    let script = r#"
import socket, sys
host, port = sys.argv[1].rsplit(':', 1)
data = bytes(range(256)) * 4
s = socket.create_connection((host, int(port)), timeout=30)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
got = b''
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    got += chunk
assert got == data.upper(), (len(got), got[:64])
print('ok')
"#;
    py.args(["-c", script, &server.addr_arg()]);
    let out = run_with_input(py, b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"ok\n");
}
