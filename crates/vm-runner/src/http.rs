//! `GET /metrics` over a unix socket (HTTP/1.0, one request per
//! connection).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::error::Error;

/// Largest response accepted.
const MAX_RESPONSE: u64 = 16 << 20;

/// Fetches `/metrics` from a unix socket and returns the body.
///
/// # Errors
/// [`Error::Scrape`] on I/O failure, a non-200 status or a malformed reply.
pub fn scrape_unix(path: &Path, timeout: Duration) -> Result<String, Error> {
    let io = |what: &str, e: std::io::Error| Error::Scrape(format!("{what}: {e}"));
    let mut stream = UnixStream::connect(path).map_err(|e| io("connect", e))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| io("set read timeout", e))?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| io("set write timeout", e))?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| io("write request", e))?;
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE)
        .read_to_end(&mut raw)
        .map_err(|e| io("read response", e))?;
    parse_response(&raw)
}

/// Splits an HTTP response, checks for status 200 and returns the body
/// (truncated to `Content-Length` when given).
///
/// # Errors
/// [`Error::Scrape`] for a malformed response or a status other than 200.
pub fn parse_response(raw: &[u8]) -> Result<String, Error> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| Error::Scrape("response has no header end".to_owned()))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut body = &raw[split + 4..];
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let code = status_line.split_whitespace().nth(1);
    if !status_line.starts_with("HTTP/1.") || code != Some("200") {
        return Err(Error::Scrape(format!("unexpected status {status_line:?}")));
    }
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                let len: usize = v
                    .trim()
                    .parse()
                    .map_err(|_| Error::Scrape(format!("bad Content-Length {v:?}")))?;
                body = body.get(..len).ok_or_else(|| {
                    Error::Scrape(format!("body shorter than Content-Length {len}"))
                })?;
            }
        }
    }
    String::from_utf8(body.to_vec()).map_err(|_| Error::Scrape("body is not UTF-8".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_response_ok_returns_body() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nm 1\nextra";

        let body = parse_response(raw).expect("valid");

        assert_eq!(body, "m 1\n");
    }

    #[test]
    fn test_parse_response_404_fails() {
        let raw = b"HTTP/1.1 404 Not Found\r\n\r\n";

        assert!(parse_response(raw).is_err());
    }

    #[test]
    fn test_parse_response_short_body_fails() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nm 1\n";

        assert!(parse_response(raw).is_err());
    }
}
