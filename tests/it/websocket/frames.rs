//! RFC 6455 by hand, for the cases a well-behaved client library will not
//! produce: an upgrade over a raw socket, then frames built byte by byte.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Opcodes.
pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// A client socket after a successful upgrade on `path`.
pub fn upgrade(addr: SocketAddr, path: &str) -> BufReader<TcpStream> {
    let (stream, status, _) = request(addr, path, &[]);
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    stream
}

/// Sends an upgrade request on `path` with `extra` header lines, and
/// returns the socket, the status line and the response's header lines.
pub fn request(
    addr: SocketAddr,
    path: &str,
    extra: &[&str],
) -> (BufReader<TcpStream>, String, Vec<String>) {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    (&stream)
        .write_all(head(addr, path, extra).as_bytes())
        .unwrap();
    let mut reader = BufReader::new(stream);
    let (status, headers) = response_head(&mut reader);
    (reader, status, headers)
}

/// An upgrade request's head for `path`, with `extra` header lines.
pub fn head(addr: SocketAddr, path: &str, extra: &[&str]) -> String {
    let mut head = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for line in extra {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head
}

/// Reads a response head: its status line and header lines, trimmed.
pub fn response_head(reader: &mut BufReader<TcpStream>) -> (String, Vec<String>) {
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        headers.push(line.trim().to_string());
    }
    (status.trim().to_string(), headers)
}

/// One frame as a client sends it: masked with `mask`, or unmasked if `None`.
pub fn frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    let masked = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(masked | n as u8),
        n if n <= 0xFFFF => {
            out.push(masked | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(masked | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A masked frame, as every client frame must be.
pub fn masked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(fin, opcode, payload, Some([0x12, 0x34, 0x56, 0x78]))
}

/// Reads one server frame: (fin, opcode, payload). Server frames are never
/// masked.
pub fn read_frame(reader: &mut BufReader<TcpStream>) -> (bool, u8, Vec<u8>) {
    let mut head = [0u8; 2];
    reader
        .read_exact(&mut head)
        .expect("a frame from the server");
    assert_eq!(head[1] & 0x80, 0, "a server frame is not masked");
    let len = match head[1] & 0x7F {
        126 => {
            let mut n = [0u8; 2];
            reader.read_exact(&mut n).unwrap();
            u64::from(u16::from_be_bytes(n))
        }
        127 => {
            let mut n = [0u8; 8];
            reader.read_exact(&mut n).unwrap();
            u64::from_be_bytes(n)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; len as usize];
    reader.read_exact(&mut payload).unwrap();
    (head[0] & 0x80 != 0, head[0] & 0x0F, payload)
}

/// Reads frames until a close frame, and returns its code and reason.
pub fn read_close(reader: &mut BufReader<TcpStream>) -> (u16, String) {
    loop {
        let (_, opcode, payload) = read_frame(reader);
        if opcode == CLOSE {
            assert!(payload.len() >= 2, "a close frame with a code: {payload:?}");
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            return (code, String::from_utf8_lossy(&payload[2..]).into_owned());
        }
    }
}

/// Writes `bytes` on the upgraded socket.
pub fn send(reader: &mut BufReader<TcpStream>, bytes: &[u8]) {
    reader.get_mut().write_all(bytes).unwrap();
}
