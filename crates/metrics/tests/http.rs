//! HTTP endpoint tests with real clients over TCP and unix sockets.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::parse_exposition;
use vugpu_metrics::{
    serve, serve_with, Metrics, MetricsError, MetricsListen, MetricsServer, ServerOptions,
};

/// Client-side read timeout: any test waiting longer than this has failed.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed HTTP response.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn parse_response(raw: &[u8]) -> Response {
    let text = String::from_utf8(raw.to_vec()).expect("response is UTF-8");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .expect("response has a header block");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"));
    let status = parts
        .next()
        .expect("status code")
        .parse()
        .expect("numeric status");
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(": ").expect("header line");
            (n.to_owned(), v.to_owned())
        })
        .collect();
    let resp = Response {
        status,
        headers,
        body: body.to_owned(),
    };
    let len: usize = resp
        .header("Content-Length")
        .expect("Content-Length")
        .parse()
        .expect("numeric length");
    assert_eq!(len, resp.body.len(), "Content-Length matches the body");
    resp
}

fn tcp_addr(server: &MetricsServer) -> SocketAddr {
    match server.local_addr() {
        MetricsListen::Tcp(a) => *a,
        MetricsListen::Unix(p) => panic!("expected TCP, got {}", p.display()),
    }
}

fn tcp_request(addr: SocketAddr, request: &[u8]) -> Response {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(CLIENT_TIMEOUT)).expect("timeout");
    s.write_all(request).expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    parse_response(&raw)
}

fn start_tcp(metrics: Arc<Metrics>, options: ServerOptions) -> MetricsServer {
    let listen = MetricsListen::parse("127.0.0.1:0").expect("valid address");
    serve_with(&listen, metrics, options).expect("server starts")
}

/// A socket path unique to this process and test.
fn socket_path(test: &str) -> PathBuf {
    std::env::temp_dir().join(format!("vugpu-metrics-{}-{test}.sock", std::process::id()))
}

#[test]
fn test_serve_tcp_port_zero_get_metrics_returns_prometheus_text() {
    // Arrange
    let metrics = Arc::new(Metrics::new());
    metrics.attached(1 << 20);
    metrics.command("resource_attach_backing");
    let server =
        serve(&"127.0.0.1:0".parse().expect("valid"), Arc::clone(&metrics)).expect("server starts");
    let addr = tcp_addr(&server);

    // Act
    let resp = tcp_request(addr, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");

    // Assert
    assert_ne!(addr.port(), 0);
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(resp.header("Connection"), Some("close"));
    let exp = parse_exposition(&resp.body);
    assert_eq!(exp.value("vugpu_attached_bytes"), 1_048_576.0);
    assert_eq!(
        exp.value(r#"vugpu_commands_total{cmd="resource_attach_backing"}"#),
        1.0
    );
}

#[test]
fn test_serve_tcp_scrape_sees_values_recorded_after_start() {
    // Arrange
    let metrics = Arc::new(Metrics::new());
    let server = start_tcp(Arc::clone(&metrics), ServerOptions::default());
    let first = tcp_request(tcp_addr(&server), b"GET /metrics HTTP/1.0\r\n\r\n");

    // Act
    metrics.decode_error();
    let second = tcp_request(tcp_addr(&server), b"GET /metrics?x=1 HTTP/1.0\r\n\r\n");

    // Assert
    assert_eq!(
        parse_exposition(&first.body).value("vugpu_decode_errors_total"),
        0.0
    );
    assert_eq!(
        parse_exposition(&second.body).value("vugpu_decode_errors_total"),
        1.0
    );
}

#[test]
fn test_serve_tcp_other_path_returns_404() {
    // Arrange
    let server = start_tcp(Arc::new(Metrics::new()), ServerOptions::default());

    // Act
    let resp = tcp_request(
        tcp_addr(&server),
        b"GET /metricsx HTTP/1.1\r\nHost: x\r\n\r\n",
    );

    // Assert
    assert_eq!(resp.status, 404);
    assert!(!resp.body.contains("vugpu_"));
}

#[test]
fn test_serve_unix_socket_get_metrics_returns_200_and_removes_socket_on_drop() {
    // Arrange
    let path = socket_path("unix-get");
    let _ = std::fs::remove_file(&path);
    let metrics = Arc::new(Metrics::new());
    metrics.fence_completed();
    let server = serve(&MetricsListen::Unix(path.clone()), metrics).expect("server starts");

    // Act
    let mut s = UnixStream::connect(&path).expect("connect");
    s.set_read_timeout(Some(CLIENT_TIMEOUT)).expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let resp = parse_response(&raw);
    let existed = path.exists();
    drop(server);

    // Assert
    assert_eq!(resp.status, 200);
    assert_eq!(
        parse_exposition(&resp.body).value("vugpu_fences_completed_total"),
        1.0
    );
    assert!(existed);
    assert!(!path.exists(), "socket file removed on drop");
}

#[test]
fn test_serve_unix_stale_socket_file_is_replaced() {
    // Arrange: a socket file left behind by a listener that is gone.
    let path = socket_path("stale");
    let _ = std::fs::remove_file(&path);
    drop(UnixListener::bind(&path).expect("bind"));
    assert!(path.exists());

    // Act
    let server = serve(&MetricsListen::Unix(path.clone()), Arc::new(Metrics::new()));

    // Assert
    assert!(server.is_ok(), "{:?}", server.err());
    drop(server);
    assert!(!path.exists());
}

#[test]
fn test_serve_unix_path_with_live_listener_is_refused_and_kept() {
    // Arrange
    let path = socket_path("live");
    let _ = std::fs::remove_file(&path);
    let other = UnixListener::bind(&path).expect("bind");

    // Act
    let result = serve(&MetricsListen::Unix(path.clone()), Arc::new(Metrics::new()));

    // Assert
    assert!(matches!(result, Err(MetricsError::UnixPathInUse { .. })));
    assert!(path.exists(), "the other listener's socket is untouched");
    drop(other);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn test_serve_non_loopback_tcp_is_refused() {
    // Arrange: built by hand, bypassing parse().
    let listen = MetricsListen::Tcp(SocketAddr::from(([0, 0, 0, 0], 0)));

    // Act
    let result = serve(&listen, Arc::new(Metrics::new()));

    // Assert
    assert!(matches!(result, Err(MetricsError::NotLoopback(_))));
}

#[test]
fn test_silent_client_does_not_delay_second_client_and_times_out() {
    // Arrange: a client that connects and sends nothing.
    let timeout = Duration::from_secs(1);
    let options = ServerOptions {
        request_timeout: timeout,
        ..ServerOptions::default()
    };
    let server = start_tcp(Arc::new(Metrics::new()), options);
    let addr = tcp_addr(&server);
    let mut silent = TcpStream::connect(addr).expect("connect");
    silent
        .set_read_timeout(Some(CLIENT_TIMEOUT))
        .expect("timeout");
    let silent_since = Instant::now();

    // Act
    let started = Instant::now();
    let resp = tcp_request(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
    let second_took = started.elapsed();
    let mut raw = Vec::new();
    silent
        .read_to_end(&mut raw)
        .expect("server answers the silent client");
    let silent_took = silent_since.elapsed();

    // Assert: the second client is served well before the first one's
    // deadline; the silent one gets 408 at about the deadline, not never.
    assert_eq!(resp.status, 200);
    assert!(
        second_took < timeout / 2,
        "second client took {second_took:?}"
    );
    assert_eq!(parse_response(&raw).status, 408);
    assert!(
        silent_took >= timeout - Duration::from_millis(50),
        "{silent_took:?}"
    );
    assert!(silent_took < timeout * 3, "{silent_took:?}");
}

#[test]
fn test_slow_client_trickling_bytes_is_cut_off_at_deadline() {
    // Arrange: the deadline covers the whole request, not each read.
    let timeout = Duration::from_millis(600);
    let options = ServerOptions {
        request_timeout: timeout,
        ..ServerOptions::default()
    };
    let server = start_tcp(Arc::new(Metrics::new()), options);
    let mut s = TcpStream::connect(tcp_addr(&server)).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let started = Instant::now();

    // Act: one byte every 100 ms, never finishing the header.
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    while started.elapsed() < CLIENT_TIMEOUT {
        if s.write_all(b"X").is_err() {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(_) => {} // read timeout: keep trickling
        }
    }
    let took = started.elapsed();

    // Assert
    assert!(took < timeout * 4, "connection held for {took:?}");
    assert!(
        raw.starts_with(b"HTTP/1.1 408 "),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
}

#[test]
fn test_oversized_request_is_refused_with_431() {
    // Arrange: a 1 KiB limit and a 16 KiB header that never ends.
    let options = ServerOptions {
        max_request_bytes: 1024,
        ..ServerOptions::default()
    };
    let server = start_tcp(Arc::new(Metrics::new()), options);
    let mut request = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
    request.resize(16 * 1024, b'a');

    // Act
    let resp = tcp_request(tcp_addr(&server), &request);

    // Assert
    assert_eq!(resp.status, 431);
}

#[test]
fn test_connections_above_limit_get_503_immediately() {
    // Arrange: room for one connection, taken by a silent client.
    let options = ServerOptions {
        max_connections: 1,
        request_timeout: Duration::from_secs(5),
        ..ServerOptions::default()
    };
    let server = start_tcp(Arc::new(Metrics::new()), options);
    let addr = tcp_addr(&server);
    let _silent = TcpStream::connect(addr).expect("connect");
    // Give the acceptor time to hand the silent connection to its thread.
    std::thread::sleep(Duration::from_millis(200));

    // Act
    let started = Instant::now();
    let resp = tcp_request(addr, b"GET /metrics HTTP/1.1\r\n\r\n");

    // Assert
    assert_eq!(resp.status, 503);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn test_shutdown_stops_accepting_connections() {
    // Arrange
    let server = start_tcp(Arc::new(Metrics::new()), ServerOptions::default());
    let addr = tcp_addr(&server);

    // Act
    let result = server.shutdown();

    // Assert
    assert!(result.is_ok(), "{result:?}");
    assert!(TcpStream::connect(addr).is_err(), "listener closed");
}

#[test]
fn test_request_split_inside_blank_line_is_served() {
    // Arrange: the terminator arrives in three pieces, so the server must
    // find "\r\n\r\n" across read boundaries.
    let server = start_tcp(Arc::new(Metrics::new()), ServerOptions::default());
    let mut s = TcpStream::connect(tcp_addr(&server)).expect("connect");
    s.set_read_timeout(Some(CLIENT_TIMEOUT)).expect("timeout");
    s.set_nodelay(true).expect("nodelay");

    // Act
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r")
        .expect("send");
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(b"\n\r").expect("send");
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(b"\n").expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");

    // Assert
    assert_eq!(parse_response(&raw).status, 200);
}

#[test]
fn test_binary_garbage_request_is_bad_request() {
    // Arrange
    let server = start_tcp(Arc::new(Metrics::new()), ServerOptions::default());

    // Act
    let resp = tcp_request(tcp_addr(&server), b"\x00\x01\xff\xfe garbage\r\n\r\n");

    // Assert
    assert_eq!(resp.status, 400);
}
