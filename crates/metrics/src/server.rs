//! A minimal HTTP/1.x responder serving `GET /metrics`.
//!
//! Design, for a scrape endpoint that must never hurt the daemon:
//! - one acceptor thread blocks in `poll(2)` on the listener and on a wake-up
//!   socket, so shutdown is immediate and needs no self-connection;
//! - each connection is handled on its own short-lived thread, at most
//!   [`ServerOptions::max_connections`] at a time (a few more get an
//!   immediate `503`, the rest are closed), so a silent client never delays
//!   another one;
//! - a request is read into a fixed buffer of
//!   [`ServerOptions::max_request_bytes`] under one overall deadline
//!   ([`ServerOptions::request_timeout`]), so a slow or hostile client can
//!   neither grow memory nor hold a thread for longer than the deadline;
//! - every response carries `Connection: close`; there is no keep-alive and
//!   no request body handling.
//!
//! Routes: `GET`/`HEAD /metrics` (query string ignored) → `200` with
//! `Content-Type: text/plain; version=0.0.4`; another method on `/metrics` →
//! `405`; any other path → `404`; malformed request line → `400`; header
//! block larger than the buffer → `431`; deadline passed → `408`.

use std::fs;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::{Metrics, MetricsError, MetricsListen};

/// Content type of the Prometheus text exposition format 0.0.4.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The only path served.
const METRICS_PATH: &str = "/metrics";

/// Longest time spent reading what a client sends after the response
/// (so that closing does not reset the connection before the client read
/// the response).
const DRAIN_TIME: Duration = Duration::from_millis(200);

/// Most bytes read and discarded after the response.
const DRAIN_BYTES: usize = 64 * 1024;

/// Pause after an accept error such as `EMFILE`, so the acceptor does not
/// spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Extra connection threads allowed above
/// [`ServerOptions::max_connections`], only to answer `503`.
const REJECT_SLOTS: usize = 16;

/// Write timeout of a `503` answer.
const REJECT_WRITE_TIMEOUT: Duration = Duration::from_millis(100);

/// Minimum time between two logged accept errors.
const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Limits of the HTTP responder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerOptions {
    /// Deadline for a client to send its whole request header, counted from
    /// accept; also the timeout of each response write.
    pub request_timeout: Duration,
    /// Size of the request buffer; a header block that does not fit is
    /// answered with `431` and the connection closed.
    pub max_request_bytes: usize,
    /// Connections handled at the same time; more are answered `503`.
    pub max_connections: usize,
}

impl Default for ServerOptions {
    /// 2 s deadline, 8 KiB requests, 8 concurrent connections.
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(2),
            max_request_bytes: 8 * 1024,
            max_connections: 8,
        }
    }
}

/// A running metrics endpoint.
///
/// Dropping it (or calling [`MetricsServer::shutdown`]) stops accepting,
/// joins the acceptor thread and removes the unix socket file it created.
/// Connections already being handled finish on their own threads within
/// [`ServerOptions::request_timeout`] plus the write time.
#[derive(Debug)]
pub struct MetricsServer {
    /// The bound address (TCP port resolved if 0 was asked for).
    local: MetricsListen,
    /// Write end of the wake-up socket of the acceptor.
    wake: UnixStream,
    /// The acceptor thread, `None` once joined.
    thread: Option<JoinHandle<()>>,
    /// The socket file we created, with its device and inode so that we
    /// never remove a file someone else put at that path later.
    socket_file: Option<(PathBuf, u64, u64)>,
}

/// Starts the metrics endpoint with [`ServerOptions::default`].
///
/// # Errors
/// See [`serve_with`].
pub fn serve(listen: &MetricsListen, metrics: Arc<Metrics>) -> Result<MetricsServer, MetricsError> {
    serve_with(listen, metrics, ServerOptions::default())
}

/// Starts the metrics endpoint on `listen` with the given limits, serving
/// snapshots of `metrics` from a new thread.
///
/// A unix socket path that already exists is replaced only if it is a
/// socket nobody listens on (left over by a crashed daemon).
///
/// # Errors
/// [`MetricsError::NotLoopback`] if a TCP address is not loopback (for a
/// `MetricsListen` built by hand rather than parsed);
/// [`MetricsError::BindTcp`] / [`MetricsError::BindUnix`] /
/// [`MetricsError::UnixPathInUse`] if binding fails;
/// [`MetricsError::ListenerSetup`] / [`MetricsError::SpawnThread`] if the
/// thread cannot be set up.
pub fn serve_with(
    listen: &MetricsListen,
    metrics: Arc<Metrics>,
    options: ServerOptions,
) -> Result<MetricsServer, MetricsError> {
    let (listener, local, socket_file) = match listen {
        MetricsListen::Tcp(addr) => {
            // Re-validate: the enum can be constructed without parse().
            MetricsListen::parse(&addr.to_string())?;
            let listener = TcpListener::bind(addr).map_err(|source| MetricsError::BindTcp {
                addr: *addr,
                source,
            })?;
            let bound = listener.local_addr().map_err(MetricsError::ListenerSetup)?;
            (Listener::Tcp(listener), MetricsListen::Tcp(bound), None)
        }
        MetricsListen::Unix(path) => {
            let listener = bind_unix(path)?;
            let meta = fs::metadata(path).map_err(|source| MetricsError::BindUnix {
                path: path.clone(),
                source,
            })?;
            (
                Listener::Unix(listener),
                MetricsListen::Unix(path.clone()),
                Some((path.clone(), meta.dev(), meta.ino())),
            )
        }
    };
    // From here on, an error must not leave the socket file behind.
    let cleanup = |err: MetricsError| {
        if let Some((path, dev, ino)) = &socket_file {
            remove_if_same(path, *dev, *ino);
        }
        err
    };
    listener
        .set_nonblocking(true)
        .map_err(|e| cleanup(MetricsError::ListenerSetup(e)))?;
    let (wake, wake_rx) =
        UnixStream::pair().map_err(|e| cleanup(MetricsError::ListenerSetup(e)))?;
    wake_rx
        .set_nonblocking(true)
        .map_err(|e| cleanup(MetricsError::ListenerSetup(e)))?;
    let thread = thread::Builder::new()
        .name("vugpu-metrics-http".into())
        .spawn(move || accept_loop(&listener, &wake_rx, &metrics, options))
        .map_err(|source| {
            cleanup(MetricsError::SpawnThread {
                name: "vugpu-metrics-http",
                source,
            })
        })?;
    log::info!("metrics: serving Prometheus text format on {local}, path {METRICS_PATH}");
    Ok(MetricsServer {
        local,
        wake,
        thread: Some(thread),
        socket_file,
    })
}

impl MetricsServer {
    /// The address actually bound: for TCP with port 0, the port the kernel
    /// chose.
    pub fn local_addr(&self) -> &MetricsListen {
        &self.local
    }

    /// Stops the server: wakes and joins the acceptor thread, then removes
    /// the unix socket file. Same as dropping, but reports failures.
    ///
    /// # Errors
    /// [`MetricsError::Wake`] if the acceptor could not be woken (it is then
    /// left running, detached); [`MetricsError::ThreadPanicked`] if it
    /// panicked.
    pub fn shutdown(mut self) -> Result<(), MetricsError> {
        self.stop()
    }

    /// Shared by `shutdown` and `Drop`; idempotent.
    fn stop(&mut self) -> Result<(), MetricsError> {
        let result = match self.thread.take() {
            None => Ok(()),
            Some(thread) => match (&self.wake).write_all(&[1]) {
                // Without a wake-up the join would block forever: detach.
                Err(e) => Err(MetricsError::Wake(e)),
                Ok(()) => thread.join().map_err(|_| MetricsError::ThreadPanicked),
            },
        };
        if let Some((path, dev, ino)) = self.socket_file.take() {
            remove_if_same(&path, dev, ino);
        }
        result
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            log::warn!("metrics: {e}");
        }
    }
}

/// Binds a unix listener, replacing a stale socket file.
fn bind_unix(path: &Path) -> Result<UnixListener, MetricsError> {
    let bind_err = |source| MetricsError::BindUnix {
        path: path.to_owned(),
        source,
    };
    match UnixListener::bind(path) {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == ErrorKind::AddrInUse => {
            let is_socket = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
            let stale = is_socket
                && matches!(UnixStream::connect(path), Err(ref c) if c.kind() == ErrorKind::ConnectionRefused);
            if !stale {
                return Err(MetricsError::UnixPathInUse {
                    path: path.to_owned(),
                });
            }
            log::info!("metrics: replacing stale socket {}", path.display());
            fs::remove_file(path).map_err(bind_err)?;
            UnixListener::bind(path).map_err(bind_err)
        }
        Err(e) => Err(bind_err(e)),
    }
}

/// Removes `path` if it is still the file with this device and inode.
fn remove_if_same(path: &Path, dev: u64, ino: u64) {
    let same = fs::symlink_metadata(path).is_ok_and(|m| m.dev() == dev && m.ino() == ino);
    if same {
        if let Err(e) = fs::remove_file(path) {
            log::warn!("metrics: failed to remove socket {}: {e}", path.display());
        }
    }
}

/// The two kinds of listener.
enum Listener {
    /// Loopback TCP.
    Tcp(TcpListener),
    /// Unix stream socket.
    Unix(UnixListener),
}

impl Listener {
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Self::Tcp(l) => l.set_nonblocking(on),
            Self::Unix(l) => l.set_nonblocking(on),
        }
    }

    fn accept(&self) -> io::Result<Stream> {
        match self {
            Self::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
            Self::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
        }
    }

    fn raw_fd(&self) -> RawFd {
        match self {
            Self::Tcp(l) => l.as_raw_fd(),
            Self::Unix(l) => l.as_raw_fd(),
        }
    }
}

/// An accepted connection of either kind.
enum Stream {
    /// Loopback TCP.
    Tcp(TcpStream),
    /// Unix stream socket.
    Unix(UnixStream),
}

impl Stream {
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.set_nonblocking(on),
            Self::Unix(s) => s.set_nonblocking(on),
        }
    }

    fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.set_read_timeout(Some(t)),
            Self::Unix(s) => s.set_read_timeout(Some(t)),
        }
    }

    fn set_write_timeout(&self, t: Duration) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.set_write_timeout(Some(t)),
            Self::Unix(s) => s.set_write_timeout(Some(t)),
        }
    }

    fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.shutdown(Shutdown::Write),
            Self::Unix(s) => s.shutdown(Shutdown::Write),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.read(buf),
            Self::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.write(buf),
            Self::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.flush(),
            Self::Unix(s) => s.flush(),
        }
    }
}

/// Decrements the live-connection count when a handler ends (even by
/// panic).
struct ConnectionSlot(Arc<AtomicUsize>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Waits until the listener or the wake-up socket is readable.
/// Returns `Ok(true)` when woken for shutdown.
fn wait_readable(listener: RawFd, wake: RawFd) -> io::Result<bool> {
    let mut fds = [
        libc::pollfd {
            fd: listener,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: wake,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: `fds` is a live, initialized array of two `pollfd`s for the
        // whole call and the count passed is its length; poll only writes
        // the `revents` fields. Both descriptors are owned by the caller and
        // stay open during the call.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if rc >= 0 {
            // Any event on the wake socket (data, hang-up of the write end
            // because the server handle was leaked/dropped) means stop.
            return Ok(fds[1].revents != 0);
        }
        let err = io::Error::last_os_error();
        if err.kind() != ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// The acceptor thread: accepts until woken, hands connections to handler
/// threads.
fn accept_loop(
    listener: &Listener,
    wake: &UnixStream,
    metrics: &Arc<Metrics>,
    options: ServerOptions,
) {
    let live = Arc::new(AtomicUsize::new(0));
    let mut last_error_log: Option<Instant> = None;
    let mut log_error = |what: &str, e: &io::Error| {
        if !matches!(last_error_log, Some(t) if t.elapsed() < ACCEPT_ERROR_LOG_INTERVAL) {
            log::warn!("metrics: {what}: {e}");
            last_error_log = Some(Instant::now());
        }
    };
    loop {
        match wait_readable(listener.raw_fd(), wake.as_raw_fd()) {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                log_error("poll on the listener failed", &e);
                thread::sleep(ACCEPT_ERROR_BACKOFF);
                continue;
            }
        }
        // Accept everything pending; the listener is non-blocking.
        loop {
            match listener.accept() {
                Ok(stream) => dispatch(stream, metrics, options, &live),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS...: back off, then retry.
                    log_error("accept failed", &e);
                    thread::sleep(ACCEPT_ERROR_BACKOFF);
                    break;
                }
            }
        }
    }
}

/// Handles a connection on a new thread. Beyond
/// [`ServerOptions::max_connections`] live handlers, up to
/// [`REJECT_SLOTS`] more threads answer `503` at once (and linger briefly so
/// the answer is not destroyed by a reset); beyond that the connection is
/// closed without an answer.
fn dispatch(
    stream: Stream,
    metrics: &Arc<Metrics>,
    options: ServerOptions,
    live: &Arc<AtomicUsize>,
) {
    let before = live.fetch_add(1, Ordering::AcqRel);
    let slot = ConnectionSlot(Arc::clone(live));
    let overloaded = before >= options.max_connections;
    if before >= options.max_connections.saturating_add(REJECT_SLOTS) {
        // Dropping the slot and the stream closes the connection.
        return;
    }
    let metrics = Arc::clone(metrics);
    let spawned = thread::Builder::new()
        .name("vugpu-metrics-conn".into())
        .spawn(move || {
            let _slot = slot;
            if overloaded {
                reject_connection(stream);
            } else {
                handle_connection(stream, &metrics, options);
            }
        });
    // On failure the closure, with its slot and stream, is dropped: the
    // count is restored and the connection closed.
    if let Err(e) = spawned {
        log::warn!("metrics: failed to spawn a connection thread: {e}");
    }
}

/// Answers `503` without reading the request, then lingers.
fn reject_connection(mut stream: Stream) {
    if stream.set_nonblocking(false).is_err()
        || stream.set_write_timeout(REJECT_WRITE_TIMEOUT).is_err()
    {
        return;
    }
    let reply = response(503, "text/plain", b"Too many connections\n", false);
    if stream.write_all(&reply).is_ok() {
        let _ = stream.shutdown_write();
        let mut buf = [0u8; 1024];
        drain(&mut stream, &mut buf);
    }
}

/// What reading a request produced.
#[derive(Debug, PartialEq, Eq)]
enum ReadOutcome {
    /// A full header block of this many bytes.
    Header(usize),
    /// The buffer filled before the header ended.
    TooLarge,
    /// The deadline passed.
    Timeout,
    /// The client closed or the connection failed.
    Closed,
}

/// Reads one request header block into `buf` under `deadline`.
fn read_request(stream: &mut Stream, buf: &mut [u8], deadline: Instant) -> ReadOutcome {
    let mut len = 0;
    loop {
        if len == buf.len() {
            return ReadOutcome::TooLarge;
        }
        let now = Instant::now();
        if now >= deadline {
            return ReadOutcome::Timeout;
        }
        if stream.set_read_timeout(deadline - now).is_err() {
            return ReadOutcome::Closed;
        }
        match stream.read(&mut buf[len..]) {
            Ok(0) => return ReadOutcome::Closed,
            Ok(n) => {
                // Only the new bytes and the 3 before them can complete a
                // terminator, so each byte is scanned a bounded number of
                // times.
                let from = len.saturating_sub(3);
                len += n;
                if let Some(end) = find_header_end(&buf[from..len]) {
                    return ReadOutcome::Header(from + end);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return ReadOutcome::Timeout;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return ReadOutcome::Closed,
        }
    }
}

/// Position just past the first blank line (`\r\n\r\n` or `\n\n`).
fn find_header_end(buf: &[u8]) -> Option<usize> {
    (0..buf.len()).find_map(|i| {
        if buf[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if buf[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

/// Serves one connection: read, route, respond, close.
fn handle_connection(mut stream: Stream, metrics: &Metrics, options: ServerOptions) {
    let deadline = Instant::now() + options.request_timeout;
    if stream.set_nonblocking(false).is_err()
        || stream.set_write_timeout(options.request_timeout).is_err()
    {
        return;
    }
    let mut buf = vec![0u8; options.max_request_bytes.max(16)];
    let reply = match read_request(&mut stream, &mut buf, deadline) {
        ReadOutcome::Header(end) => route(&buf[..end], metrics),
        ReadOutcome::TooLarge => response(431, "text/plain", b"Request header too large\n", false),
        ReadOutcome::Timeout => response(408, "text/plain", b"Request timeout\n", false),
        ReadOutcome::Closed => return,
    };
    if let Err(e) = stream.write_all(&reply) {
        log::debug!("metrics: writing the response failed: {e}");
        return;
    }
    let _ = stream.shutdown_write();
    drain(&mut stream, &mut buf);
}

/// Reads and discards what the client still sends, for a bounded time and
/// size, so that closing does not turn into a reset that could destroy the
/// response in flight.
fn drain(stream: &mut Stream, buf: &mut [u8]) {
    let deadline = Instant::now() + DRAIN_TIME;
    let mut total = 0;
    while total < DRAIN_BYTES {
        let now = Instant::now();
        if now >= deadline || stream.set_read_timeout(deadline - now).is_err() {
            return;
        }
        match stream.read(buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}

/// Builds the response to a complete header block.
fn route(header: &[u8], metrics: &Metrics) -> Vec<u8> {
    let Some(request_line) = header.split(|&b| b == b'\n').next() else {
        return response(400, "text/plain", b"Bad request\n", false);
    };
    let request_line = request_line.strip_suffix(b"\r").unwrap_or(request_line);
    let mut parts = request_line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return response(400, "text/plain", b"Bad request\n", false);
    };
    if !version.starts_with(b"HTTP/1.") {
        return response(400, "text/plain", b"Bad request\n", false);
    }
    let path = target.split(|&b| b == b'?').next().unwrap_or(target);
    if path != METRICS_PATH.as_bytes() {
        return response(404, "text/plain", b"Not found; try /metrics\n", false);
    }
    match method {
        b"GET" => response(
            200,
            PROMETHEUS_CONTENT_TYPE,
            metrics.render_prometheus().as_bytes(),
            false,
        ),
        b"HEAD" => response(
            200,
            PROMETHEUS_CONTENT_TYPE,
            metrics.render_prometheus().as_bytes(),
            true,
        ),
        _ => response(405, "text/plain", b"Method not allowed\n", false),
    }
}

/// Formats a complete `HTTP/1.1` response with `Connection: close`.
/// With `head_only` the body is left out but its length still announced.
fn response(status: u16, content_type: &str, body: &[u8], head_only: bool) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let allow = if status == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_find_header_end_crlf_returns_position_after_blank_line() {
        // Arrange
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\ntrailing";

        // Act
        let end = find_header_end(req);

        // Assert: "trailing" starts right after the blank line.
        assert_eq!(end.map(|e| &req[e..]), Some(&b"trailing"[..]));
    }

    #[test]
    fn test_find_header_end_incomplete_returns_none() {
        // Arrange / Act
        let end = find_header_end(b"GET / HTTP/1.1\r\nHost: x\r\n");

        // Assert
        assert_eq!(end, None);
    }

    #[test]
    fn test_route_extra_token_in_request_line_is_bad_request() {
        // Arrange
        let metrics = Metrics::new();

        // Act
        let reply = route(b"GET /metrics HTTP/1.1 extra\r\n\r\n", &metrics);

        // Assert
        assert!(reply.starts_with(b"HTTP/1.1 400 "));
    }

    #[test]
    fn test_route_http09_request_is_bad_request() {
        // Arrange
        let metrics = Metrics::new();

        // Act
        let reply = route(b"GET /metrics\r\n\r\n", &metrics);

        // Assert
        assert!(reply.starts_with(b"HTTP/1.1 400 "));
    }

    #[test]
    fn test_route_post_metrics_is_method_not_allowed() {
        // Arrange
        let metrics = Metrics::new();

        // Act
        let reply = route(b"POST /metrics HTTP/1.1\r\n\r\n", &metrics);

        // Assert
        assert!(reply.starts_with(b"HTTP/1.1 405 "));
    }

    #[test]
    fn test_route_head_metrics_announces_length_without_body() {
        // Arrange
        let metrics = Metrics::new();
        let body_len = metrics.render_prometheus().len();

        // Act
        let reply = route(b"HEAD /metrics HTTP/1.0\r\n\r\n", &metrics);

        // Assert
        let text = String::from_utf8(reply).expect("ascii response");
        assert!(text.contains(&format!("Content-Length: {body_len}\r\n")));
        assert!(text.ends_with("\r\n\r\n"));
    }
}
