//! A minimal HTTP/1.1 GET for probing the health endpoints from tests.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::time::Duration;

use libtest_mimic::Failed;

/// `GET path` on `address` with an `Accept` header: the status, the `Content-Type` and the
/// body.
pub fn http_get_accept(
    address: std::net::SocketAddr,
    path: &str,
    accept: &str,
) -> Result<(u16, String, String), Failed> {
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or("no head")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    let content_type = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    Ok((status, content_type, body.to_string()))
}

/// `GET path` on `address`: the status and the body.
pub fn http_get(address: std::net::SocketAddr, path: &str) -> Result<(u16, String), Failed> {
    let (status, _, body) = http_get_accept(address, path, "*/*")?;
    Ok((status, body))
}
