//! The vhost-user-gpu display socket (`VHOST_USER_GPU_SET_SOCKET`).
//!
//! QEMU's `vhost-user-gpu-pci` hands the backend a second unix socket over
//! which the backend *sends* display traffic: scanout geometry, pixel
//! updates and cursor changes, and *asks* for the preferred display
//! configuration and EDID. [`Display`] speaks that protocol itself over a
//! non-blocking socket, so that every exchange has a deadline:
//!
//! - requests with a reply (protocol features, display info, EDID) wait at
//!   most [`REQUEST_DEADLINE`] for the socket to accept the request and for
//!   the reply; a frontend that does not answer is an error, and the caller
//!   drops the display and runs headless;
//! - pixel and cursor updates wait at most [`UPDATE_DEADLINE`] for room in
//!   the socket. If the frontend stops reading, the rest of the message
//!   being sent is kept (so the stream stays well-formed) and further pixel
//!   and cursor updates are dropped after a [`STALL_PROBE`] wait, until the
//!   frontend reads again; scanout geometry messages are queued (a bounded number)
//!   rather than dropped. A stalled display thus costs display updates,
//!   never the control queue, a reset or a shutdown. (vhost 0.18's own
//!   sender retries EAGAIN in a loop, which would spin on a stalled peer.)
//!
//! The handshake and every request that waits for a reply run on the worker
//! thread, never on the vhost-user frontend thread: QEMU answers display
//! requests from its main loop, which may itself be waiting for a vhost-user
//! reply.
//!
//! A scanout larger than the display the frontend announced is clipped to
//! it: the SCANOUT message and every update only cover the announced size.
//!
//! Pixels that come straight from a host copy with a mapping of its own
//! (`HostRows::own_mapping`) go to the socket by reference: `vmsplice` puts
//! their pages into a pipe and `splice` moves them into the socket, which
//! queues the pages themselves (unix stream sockets take spliced pages
//! since Linux 6.5), so the only copy of the pixels is the frontend's read.
//! The frontend may then read pixels a later TRANSFER already changed (as
//! with any display reading a live framebuffer), never other data: those
//! pages are not reused while the kernel holds them. Where the kernel does
//! not support it the display falls back to copying, for good.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use vugpu_protocol::{DisplayOne, Rect};

/// `VHOST_USER_GPU_PROTOCOL_F_EDID` as a bit mask.
const PROTOCOL_F_EDID: u64 = 1 << 0;

/// Cursor images are always 64x64 pixels of 4 bytes.
pub const CURSOR_BYTES: usize = 4 * 64 * 64;

/// Largest pixel payload of one `VHOST_USER_GPU_UPDATE` message; larger
/// rectangles are sent as several messages of whole rows.
const MAX_UPDATE_PAYLOAD: usize = 1 << 20;

/// Smallest payload sent by reference (below it a copy is as cheap).
const SPLICE_MIN: usize = 64 << 10;

/// Pipe size asked for the by-reference path (the default limit for an
/// unprivileged process, `/proc/sys/fs/pipe-max-size`).
const SPLICE_PIPE_SIZE: libc::c_int = 1 << 20;

/// Send buffer asked for on the display socket: a 1080p frame (8 MB)
/// and then some.
const SEND_BUFFER: libc::c_int = 12 << 20;

/// Longest wait for a request with a reply (send and reply each).
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(1);
/// Longest wait for room in the socket for one update message.
pub const UPDATE_DEADLINE: Duration = Duration::from_millis(200);
/// How long a message waits for the rest of an earlier, cut message to go
/// out before it is dropped (display stalled) or queued.
pub const STALL_PROBE: Duration = Duration::from_millis(20);
/// Most bytes of queued geometry messages kept while the display is stalled.
const MAX_QUEUED_BYTES: usize = 4096;
/// Largest reply accepted (GET_EDID: 24 + 8 + 1024 bytes).
const MAX_REPLY: usize = 2048;
/// Number of modes in `virtio_gpu_resp_display_info`.
const MAX_SCANOUTS: usize = 16;

/// Display protocol request codes (`VhostUserGpuRequest`).
mod req {
    pub const GET_PROTOCOL_FEATURES: u32 = 1;
    pub const SET_PROTOCOL_FEATURES: u32 = 2;
    pub const GET_DISPLAY_INFO: u32 = 3;
    pub const CURSOR_POS: u32 = 4;
    pub const CURSOR_POS_HIDE: u32 = 5;
    pub const CURSOR_UPDATE: u32 = 6;
    pub const SCANOUT: u32 = 7;
    pub const UPDATE: u32 = 8;
    pub const GET_EDID: u32 = 11;
}

/// Header flag of a reply.
const FLAG_REPLY: u32 = 0x4;

/// A failed exchange on the display socket.
#[derive(Debug, thiserror::Error)]
#[error("Display socket {what} failed")]
pub struct DisplayError {
    /// The message being exchanged.
    what: &'static str,
    /// Cause reported by the socket.
    #[source]
    source: io::Error,
}

fn err(what: &'static str) -> impl FnOnce(io::Error) -> DisplayError {
    move |source| DisplayError { what, source }
}

/// The frontend's display, reached through the display socket.
#[derive(Debug)]
pub struct Display {
    stream: UnixStream,
    edid: bool,
    /// Bytes accepted for sending but not yet written (the rest of a
    /// message cut by a stall, then queued geometry messages).
    out: Vec<u8>,
    /// Announced size per scanout (from the frontend's display info).
    announced: [(u32, u32); MAX_SCANOUTS],
    /// Updates dropped because the display was stalled.
    dropped: u64,
    /// The by-reference path, while the kernel supports it.
    splice: Option<SplicePipe>,
}

/// The pipe through which pixel pages reach the socket by reference.
#[derive(Debug)]
struct SplicePipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes in the pipe: the next bytes of the stream, ahead of
    /// [`Display::out`].
    queued: usize,
}

impl SplicePipe {
    /// A non-blocking pipe, enlarged if the system allows it.
    fn new() -> io::Result<Self> {
        let mut fds = [0; 2];
        // SAFETY: `fds` is an array of two ints for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded: both descriptors are new and owned here.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // Best effort: a smaller pipe only means more system calls.
        // SAFETY: F_SETPIPE_SZ on a pipe we own; no memory is passed.
        unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, SPLICE_PIPE_SIZE) };
        Ok(Self {
            read,
            write,
            queued: 0,
        })
    }

    /// Hands the pages of `bytes` to the pipe by reference; returns how
    /// many bytes went in.
    fn vmsplice(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let iov = libc::iovec {
            iov_base: bytes.as_ptr().cast_mut().cast(),
            iov_len: bytes.len(),
        };
        // SAFETY: `iov` describes `bytes`, readable for the call; without
        // SPLICE_F_GIFT the kernel only takes references to the pages and
        // never writes them.
        let n = unsafe { libc::vmsplice(self.write.as_raw_fd(), &iov, 1, libc::SPLICE_F_NONBLOCK) };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        self.queued += n;
        Ok(n)
    }

    /// Moves queued bytes into `socket`; returns how many moved.
    fn splice_to(&mut self, socket: RawFd) -> io::Result<usize> {
        // SAFETY: plain descriptors and null offsets (both are streams).
        let n = unsafe {
            libc::splice(
                self.read.as_raw_fd(),
                std::ptr::null_mut(),
                socket,
                std::ptr::null_mut(),
                self.queued,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        self.queued -= n.min(self.queued);
        Ok(n)
    }

    /// Reads the queued bytes back (to send them by copy instead).
    fn take_queued(&mut self) -> io::Result<Vec<u8>> {
        let mut bytes = vec![0u8; self.queued];
        let mut got = 0;
        while got < bytes.len() {
            let rest = &mut bytes[got..];
            // SAFETY: `rest` is writable for its length.
            let n =
                unsafe { libc::read(self.read.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len()) };
            match usize::try_from(n) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(_) => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
        bytes.truncate(got);
        self.queued = 0;
        Ok(bytes)
    }
}

/// Asks for a send buffer that holds a whole 1080p frame
/// ([`SEND_BUFFER`]), so a frame goes out without waiting for the frontend
/// to read its first part: `SO_SNDBUFFORCE` where the daemon may exceed
/// `net.core.wmem_max` (CAP_NET_ADMIN), `SO_SNDBUF` (capped there)
/// otherwise. Best effort: a smaller buffer only costs wake-ups.
fn deepen_send_buffer(stream: &UnixStream) {
    let size = SEND_BUFFER;
    for option in [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF] {
        // SAFETY: `size` is a c_int that lives across the call and its
        // length is passed.
        let rc = unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                std::ptr::from_ref(&size).cast(),
                std::mem::size_of_val(&size) as libc::socklen_t,
            )
        };
        if rc == 0 {
            return;
        }
    }
}

/// Whether a splice error means the kernel cannot do it for this pair of
/// files (rather than a broken socket).
fn splice_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP | libc::EBADF)
    )
}

/// Waits until `fd` is ready for `events` or `deadline` passes; true if
/// ready.
fn wait_ready(fd: i32, events: libc::c_short, deadline: Instant) -> io::Result<bool> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: `pfd` is a valid pollfd for the call; count 1 matches.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if rc > 0 {
            if pfd.revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
    }
}

fn header(request: u32, flags: u32, size: usize) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0..4].copy_from_slice(&request.to_le_bytes());
    h[4..8].copy_from_slice(&flags.to_le_bytes());
    h[8..12].copy_from_slice(&u32::try_from(size).unwrap_or(u32::MAX).to_le_bytes());
    h
}

impl Display {
    /// Performs the protocol handshake on `stream` (made non-blocking):
    /// asks the frontend for its protocol features, enables EDID when it
    /// offers it, and reads its display configuration (the announced sizes
    /// scanouts are clipped to).
    ///
    /// # Errors
    /// A [`DisplayError`] when the frontend does not answer in time.
    pub fn connect(stream: UnixStream) -> Result<Self, DisplayError> {
        stream
            .set_nonblocking(true)
            .map_err(err("setting O_NONBLOCK"))?;
        deepen_send_buffer(&stream);
        let mut display = Self {
            stream,
            edid: false,
            out: Vec::new(),
            announced: [(u32::MAX, u32::MAX); MAX_SCANOUTS],
            dropped: 0,
            splice: SplicePipe::new().ok(),
        };
        let offered = display.request(req::GET_PROTOCOL_FEATURES, &[], "GET_PROTOCOL_FEATURES")?;
        let offered = offered
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes);
        let wanted = offered & PROTOCOL_F_EDID;
        display.send_kept(
            req::SET_PROTOCOL_FEATURES,
            &wanted.to_le_bytes(),
            &[],
            "SET_PROTOCOL_FEATURES",
        )?;
        display.edid = wanted & PROTOCOL_F_EDID != 0;
        display.display_info()?;
        Ok(display)
    }

    /// Whether the frontend can provide EDID blobs.
    pub fn has_edid(&self) -> bool {
        self.edid
    }

    /// Updates dropped so far because the frontend was not reading.
    pub fn dropped_updates(&self) -> u64 {
        self.dropped
    }

    /// The size scanout `scanout_id` is clipped to (the frontend's
    /// announced mode; unbounded if it announced none).
    pub fn announced(&self, scanout_id: u32) -> (u32, u32) {
        usize::try_from(scanout_id)
            .ok()
            .and_then(|i| self.announced.get(i).copied())
            .unwrap_or((0, 0))
    }

    /// The frontend's preferred display configuration; also becomes the
    /// size scanouts are clipped to.
    ///
    /// # Errors
    /// A [`DisplayError`] when the exchange fails or times out.
    pub fn display_info(&mut self) -> Result<Vec<DisplayOne>, DisplayError> {
        let reply = self.request(req::GET_DISPLAY_INFO, &[], "GET_DISPLAY_INFO")?;
        let mut modes = Vec::with_capacity(MAX_SCANOUTS);
        for i in 0..MAX_SCANOUTS {
            let at = 24 + i * 24;
            let word = |o: usize| {
                reply
                    .get(at + o..at + o + 4)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u32::from_le_bytes)
            };
            let mode = DisplayOne {
                rect: Rect {
                    x: word(0),
                    y: word(4),
                    width: word(8),
                    height: word(12),
                },
                enabled: word(16) != 0,
                flags: word(20),
            };
            if let Some(slot) = self.announced.get_mut(i) {
                *slot = if mode.rect.width > 0 && mode.rect.height > 0 {
                    (mode.rect.width, mode.rect.height)
                } else {
                    (u32::MAX, u32::MAX)
                };
            }
            modes.push(mode);
        }
        Ok(modes)
    }

    /// The frontend's EDID for `scanout_id`, `None` when it offers no EDID.
    ///
    /// # Errors
    /// A [`DisplayError`] when the exchange fails or times out.
    pub fn edid(&mut self, scanout_id: u32) -> Result<Option<Vec<u8>>, DisplayError> {
        if !self.edid {
            return Ok(None);
        }
        let reply = self.request(req::GET_EDID, &scanout_id.to_le_bytes(), "GET_EDID")?;
        let size = reply
            .get(24..28)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_le_bytes);
        let blob = reply.get(32..).unwrap_or(&[]);
        let len = usize::try_from(size).unwrap_or(usize::MAX).min(blob.len());
        Ok(Some(blob[..len].to_vec()))
    }

    /// Sets the geometry of a scanout (clipped to the announced size); 0x0
    /// disables it.
    ///
    /// # Errors
    /// A [`DisplayError`] when the socket failed or queued geometry
    /// overflowed.
    pub fn set_scanout(
        &mut self,
        scanout_id: u32,
        width: u32,
        height: u32,
    ) -> Result<(), DisplayError> {
        let (max_w, max_h) = self.announced(scanout_id);
        let mut body = [0u8; 12];
        body[0..4].copy_from_slice(&scanout_id.to_le_bytes());
        body[4..8].copy_from_slice(&width.min(max_w).to_le_bytes());
        body[8..12].copy_from_slice(&height.min(max_h).to_le_bytes());
        self.send_kept(req::SCANOUT, &body, &[], "SCANOUT")
    }

    /// Sends the pixels of `rect` (x8r8g8b8, `rect.width * 4` bytes per
    /// row, rows packed) for `scanout_id`, split into messages of at most
    /// `MAX_UPDATE_PAYLOAD` bytes. Rows and columns beyond the announced
    /// display size are not sent.
    ///
    /// # Errors
    /// A [`DisplayError`] when the socket failed (a stall is not an error:
    /// the update is dropped).
    pub fn update(
        &mut self,
        scanout_id: u32,
        rect: Rect,
        pixels: &[u8],
    ) -> Result<(), DisplayError> {
        self.update_from(scanout_id, rect, pixels, false)
    }

    /// [`Display::update`] of pixels whose pages may be sent by reference:
    /// they are a host copy with a mapping of its own
    /// (`HostRows::own_mapping`), which is never reused for other data.
    ///
    /// # Errors
    /// As [`Display::update`].
    pub fn update_mapped(
        &mut self,
        scanout_id: u32,
        rect: Rect,
        pixels: &[u8],
    ) -> Result<(), DisplayError> {
        self.update_from(scanout_id, rect, pixels, true)
    }

    fn update_from(
        &mut self,
        scanout_id: u32,
        rect: Rect,
        pixels: &[u8],
        by_reference: bool,
    ) -> Result<(), DisplayError> {
        let stride = usize::try_from(rect.width)
            .unwrap_or(usize::MAX)
            .saturating_mul(4);
        if stride == 0 || rect.height == 0 {
            return Ok(());
        }
        let (max_w, max_h) = self.announced(scanout_id);
        if rect.x >= max_w || rect.y >= max_h {
            return Ok(());
        }
        let visible_w = rect.width.min(max_w - rect.x);
        let visible_h = rect.height.min(max_h - rect.y);
        let visible_rows = usize::try_from(visible_h).unwrap_or(usize::MAX);
        if visible_w < rect.width {
            // Clipped columns: repack the visible part row by row (only for
            // a scanout larger than the announced display).
            let row = usize::try_from(visible_w).unwrap_or(0) * 4;
            let mut packed = Vec::with_capacity(row * visible_rows);
            for chunk in pixels.chunks(stride).take(visible_rows) {
                packed.extend_from_slice(chunk.get(..row).unwrap_or(chunk));
            }
            let clipped = Rect {
                width: visible_w,
                height: visible_h,
                ..rect
            };
            return self.send_rows(scanout_id, clipped, &packed, row, false);
        }
        let bytes = visible_rows.saturating_mul(stride).min(pixels.len());
        let clipped = Rect {
            height: visible_h,
            ..rect
        };
        self.send_rows(scanout_id, clipped, &pixels[..bytes], stride, by_reference)
    }

    fn send_rows(
        &mut self,
        scanout_id: u32,
        rect: Rect,
        pixels: &[u8],
        stride: usize,
        by_reference: bool,
    ) -> Result<(), DisplayError> {
        if stride == 0 {
            return Ok(());
        }
        let rows_per_msg = (MAX_UPDATE_PAYLOAD / stride).max(1);
        for (i, chunk) in pixels.chunks(rows_per_msg * stride).enumerate() {
            let first_row = i.saturating_mul(rows_per_msg);
            let rows = chunk.len() / stride;
            if rows == 0 {
                break;
            }
            let mut body = [0u8; 20];
            let y = rect
                .y
                .saturating_add(u32::try_from(first_row).unwrap_or(u32::MAX));
            for (k, v) in [
                scanout_id,
                rect.x,
                y,
                rect.width,
                u32::try_from(rows).unwrap_or(u32::MAX),
            ]
            .into_iter()
            .enumerate()
            {
                body[k * 4..k * 4 + 4].copy_from_slice(&v.to_le_bytes());
            }
            self.send_droppable(
                req::UPDATE,
                &body,
                &chunk[..rows * stride],
                "UPDATE",
                by_reference,
            )?;
        }
        Ok(())
    }

    /// Shows `image` (64x64 x8r8g8b8 with alpha) as the cursor at `pos`.
    ///
    /// # Errors
    /// A [`DisplayError`] when the socket failed.
    pub fn cursor_update(
        &mut self,
        scanout_id: u32,
        x: u32,
        y: u32,
        hot_x: u32,
        hot_y: u32,
        image: &[u8; CURSOR_BYTES],
    ) -> Result<(), DisplayError> {
        let mut body = [0u8; 20];
        for (k, v) in [scanout_id, x, y, hot_x, hot_y].into_iter().enumerate() {
            body[k * 4..k * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        self.send_droppable(req::CURSOR_UPDATE, &body, image, "CURSOR_UPDATE", false)
    }

    /// Moves the cursor.
    ///
    /// # Errors
    /// A [`DisplayError`] when the socket failed.
    pub fn cursor_pos(&mut self, scanout_id: u32, x: u32, y: u32) -> Result<(), DisplayError> {
        let body = Self::pos(scanout_id, x, y);
        self.send_droppable(req::CURSOR_POS, &body, &[], "CURSOR_POS", false)
    }

    /// Hides the cursor.
    ///
    /// # Errors
    /// A [`DisplayError`] when the socket failed.
    pub fn cursor_hide(&mut self, scanout_id: u32, x: u32, y: u32) -> Result<(), DisplayError> {
        let body = Self::pos(scanout_id, x, y);
        self.send_droppable(req::CURSOR_POS_HIDE, &body, &[], "CURSOR_POS_HIDE", false)
    }

    fn pos(scanout_id: u32, x: u32, y: u32) -> [u8; 12] {
        let mut body = [0u8; 12];
        for (k, v) in [scanout_id, x, y].into_iter().enumerate() {
            body[k * 4..k * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        body
    }

    /// Writes as much of `parts` as the socket takes now; returns the
    /// number of bytes written.
    fn write_now(&mut self, parts: &[&[u8]]) -> io::Result<usize> {
        let slices: Vec<io::IoSlice<'_>> = parts.iter().map(|p| io::IoSlice::new(p)).collect();
        loop {
            match self.stream.write_vectored(&slices) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether bytes of earlier messages still wait to go out.
    fn pending(&self) -> bool {
        !self.out.is_empty() || self.splice.as_ref().is_some_and(|p| p.queued > 0)
    }

    /// Gives up the by-reference path: what the pipe holds goes back in
    /// front of [`Display::out`], to be sent by copy.
    fn stop_splicing(&mut self, why: &io::Error) -> io::Result<()> {
        log::info!("vhost-user-gpu: display: sending pixels by copy from now on ({why})");
        let Some(mut pipe) = self.splice.take() else {
            return Ok(());
        };
        let mut front = pipe.take_queued()?;
        front.extend_from_slice(&self.out);
        self.out = front;
        Ok(())
    }

    /// Moves what the pipe holds into the socket until done or `deadline`;
    /// true if the pipe is empty.
    fn drain_pipe(&mut self, deadline: Instant) -> io::Result<bool> {
        let socket = self.stream.as_raw_fd();
        loop {
            let Some(pipe) = self.splice.as_mut() else {
                return Ok(true);
            };
            if pipe.queued == 0 {
                return Ok(true);
            }
            match pipe.splice_to(socket) {
                // Nothing moved with bytes queued: treat as a refusal rather
                // than loop.
                Ok(0) => {
                    self.stop_splicing(&io::Error::from(io::ErrorKind::WriteZero))?;
                    return Ok(true);
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !wait_ready(socket, libc::POLLOUT, deadline)? {
                        return Ok(false);
                    }
                }
                Err(e) if splice_unsupported(&e) => {
                    self.stop_splicing(&e)?;
                    return Ok(true);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes out queued bytes until done or `deadline`; true if nothing
    /// is left.
    fn flush_out(&mut self, deadline: Instant) -> io::Result<bool> {
        if !self.drain_pipe(deadline)? {
            return Ok(false);
        }
        while !self.out.is_empty() {
            let out = std::mem::take(&mut self.out);
            let n = self.write_now(&[&out])?;
            self.out = out;
            self.out.drain(..n);
            if self.out.is_empty() {
                break;
            }
            if n == 0 && !wait_ready(self.stream.as_raw_fd(), libc::POLLOUT, deadline)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Sends one message within `deadline`; what does not fit in time is
    /// queued so the stream stays whole. Returns false if it had to queue.
    /// The payload goes by reference if `by_reference` allows it and the
    /// kernel supports it. Nothing else may be pending.
    fn send_message(
        &mut self,
        request: u32,
        body: &[u8],
        payload: &[u8],
        deadline: Instant,
        by_reference: bool,
    ) -> io::Result<bool> {
        let hdr = header(request, 0, body.len() + payload.len());
        let by_reference = by_reference && payload.len() >= SPLICE_MIN && self.splice.is_some();
        let copied: &[u8] = if by_reference { &[] } else { payload };
        let total = hdr.len() + body.len() + copied.len();
        let mut sent = 0;
        while sent < total {
            let parts = remaining(&[&hdr, body, copied], sent);
            let n = self.write_now(&parts)?;
            sent += n;
            if sent < total
                && n == 0
                && !wait_ready(self.stream.as_raw_fd(), libc::POLLOUT, deadline)?
            {
                for part in remaining(&[&hdr, body, payload], sent) {
                    self.out.extend_from_slice(part);
                }
                return Ok(false);
            }
        }
        if by_reference {
            return self.splice_payload(payload, deadline);
        }
        Ok(true)
    }

    /// Sends `payload` through the pipe by reference (the header is out);
    /// on a stall past `deadline` the rest is queued by copy behind what
    /// the pipe holds.
    fn splice_payload(&mut self, payload: &[u8], deadline: Instant) -> io::Result<bool> {
        let mut off = 0;
        while off < payload.len() {
            if !self.drain_pipe(deadline)? {
                self.out.extend_from_slice(&payload[off..]);
                return Ok(false);
            }
            let Some(pipe) = self.splice.as_mut() else {
                // The kernel refused: the rest goes by copy.
                self.out.extend_from_slice(&payload[off..]);
                return self.flush_out(deadline);
            };
            match pipe.vmsplice(&payload[off..]) {
                Ok(0) => {
                    self.stop_splicing(&io::Error::from(io::ErrorKind::WriteZero))?;
                    self.out.extend_from_slice(&payload[off..]);
                    return self.flush_out(deadline);
                }
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The pipe is empty here, so a full pipe cannot be why.
                Err(e) => {
                    self.stop_splicing(&e)?;
                    self.out.extend_from_slice(&payload[off..]);
                    return self.flush_out(deadline);
                }
            }
        }
        if !self.drain_pipe(deadline)? {
            return Ok(false);
        }
        // A refusal on the last splice leaves the pipe's bytes in `out`.
        self.flush_out(deadline)
    }

    /// False if the frontend stopped reading: the rest of an earlier, cut
    /// message did not go out within a [`STALL_PROBE`] wait. Counts the
    /// update the caller will then not send as dropped.
    pub fn ready_for_update(&mut self) -> bool {
        if !self.pending() {
            return true;
        }
        let ready = self
            .flush_out(Instant::now() + STALL_PROBE)
            .unwrap_or(false);
        if !ready {
            self.dropped += 1;
        }
        ready
    }

    /// A pixel or cursor message: dropped if the display is stalled.
    fn send_droppable(
        &mut self,
        request: u32,
        body: &[u8],
        payload: &[u8],
        what: &'static str,
        by_reference: bool,
    ) -> Result<(), DisplayError> {
        // Stalled: give the rest of the cut message a short chance to go
        // out; drop this update if it does not.
        if self.pending()
            && !self
                .flush_out(Instant::now() + STALL_PROBE)
                .map_err(err(what))?
        {
            self.dropped += 1;
            return Ok(());
        }
        let deadline = Instant::now() + UPDATE_DEADLINE;
        self.send_message(request, body, payload, deadline, by_reference)
            .map(|_| ())
            .map_err(err(what))
    }

    /// A geometry message: queued (bounded) while the display is stalled.
    fn send_kept(
        &mut self,
        request: u32,
        body: &[u8],
        payload: &[u8],
        what: &'static str,
    ) -> Result<(), DisplayError> {
        if self.pending()
            && !self
                .flush_out(Instant::now() + STALL_PROBE)
                .map_err(err(what))?
        {
            let hdr = header(request, 0, body.len() + payload.len());
            if self.out.len() + hdr.len() + body.len() + payload.len()
                > MAX_QUEUED_BYTES + MAX_UPDATE_PAYLOAD + 64
            {
                return Err(DisplayError {
                    what,
                    source: io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the frontend stopped reading the display socket",
                    ),
                });
            }
            self.out.extend_from_slice(&hdr);
            self.out.extend_from_slice(body);
            self.out.extend_from_slice(payload);
            return Ok(());
        }
        let deadline = Instant::now() + UPDATE_DEADLINE;
        self.send_message(request, body, payload, deadline, false)
            .map(|_| ())
            .map_err(err(what))
    }

    /// Sends a request and reads its reply, each within
    /// [`REQUEST_DEADLINE`]; returns the reply payload.
    fn request(
        &mut self,
        request: u32,
        body: &[u8],
        what: &'static str,
    ) -> Result<Vec<u8>, DisplayError> {
        let timed_out = || DisplayError {
            what,
            source: io::Error::new(io::ErrorKind::TimedOut, "no answer from the frontend"),
        };
        let deadline = Instant::now() + REQUEST_DEADLINE;
        if !self.flush_out(deadline).map_err(err(what))? {
            return Err(timed_out());
        }
        if !self
            .send_message(request, body, &[], deadline, false)
            .map_err(err(what))?
        {
            return Err(timed_out());
        }
        let deadline = Instant::now() + REQUEST_DEADLINE;
        let mut hdr = [0u8; 12];
        self.read_exact_by(&mut hdr, deadline)
            .map_err(err(what))?
            .then_some(())
            .ok_or_else(timed_out)?;
        let word = |i: usize| u32::from_le_bytes([hdr[i], hdr[i + 1], hdr[i + 2], hdr[i + 3]]);
        let size = usize::try_from(word(8)).unwrap_or(usize::MAX);
        if word(0) != request || word(4) & FLAG_REPLY == 0 || size > MAX_REPLY {
            return Err(DisplayError {
                what,
                source: io::Error::new(io::ErrorKind::InvalidData, "unexpected reply"),
            });
        }
        let mut payload = vec![0u8; size];
        self.read_exact_by(&mut payload, deadline)
            .map_err(err(what))?
            .then_some(())
            .ok_or_else(timed_out)?;
        Ok(payload)
    }

    /// Reads exactly `buf.len()` bytes by `deadline`; false on timeout.
    fn read_exact_by(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<bool> {
        let mut got = 0;
        while got < buf.len() {
            match self.stream.read(&mut buf[got..]) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !wait_ready(self.stream.as_raw_fd(), libc::POLLIN, deadline)? {
                        return Ok(false);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

/// The parts of `parts` after the first `skip` bytes.
fn remaining<'a>(parts: &[&'a [u8]], mut skip: usize) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        if skip >= part.len() {
            skip -= part.len();
            continue;
        }
        out.push(&part[skip..]);
        skip = 0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A display on `ours` (made non-blocking, with the default send
    /// buffer) that announced `w`x`h`.
    fn display_on(ours: UnixStream, w: u32, h: u32) -> Display {
        ours.set_nonblocking(true).expect("nonblocking");
        Display {
            stream: ours,
            edid: false,
            out: Vec::new(),
            announced: [(w, h); MAX_SCANOUTS],
            dropped: 0,
            splice: SplicePipe::new().ok(),
        }
    }

    /// Reads UPDATE messages from `theirs` until `bytes` payload bytes
    /// arrived; returns the payloads in order, each after checking that the
    /// header's size matches the body and rows.
    fn read_updates(theirs: &mut UnixStream, mut bytes: usize) -> Vec<Vec<u8>> {
        let mut payloads = Vec::new();
        while bytes > 0 {
            let mut hdr = [0u8; 12 + 20];
            theirs.read_exact(&mut hdr).expect("header");
            let word = |i: usize| u32::from_le_bytes(hdr[i..i + 4].try_into().expect("4"));
            assert_eq!(word(0), req::UPDATE);
            let size = word(8) as usize - 20;
            assert_eq!(size, (word(24) * word(28) * 4) as usize);
            let mut payload = vec![0u8; size];
            theirs.read_exact(&mut payload).expect("payload");
            bytes -= size.min(bytes);
            payloads.push(payload);
        }
        payloads
    }

    fn pattern(len: usize, seed: usize) -> Vec<u8> {
        (0..len).map(|i| ((i / 4 + seed) % 251) as u8).collect()
    }

    #[test]
    fn test_mapped_updates_arrive_whole_and_in_order() {
        let (ours, mut theirs) = UnixStream::pair().expect("socketpair");
        deepen_send_buffer(&ours);
        let mut display = display_on(ours, u32::MAX, u32::MAX);
        let rect = Rect {
            x: 0,
            y: 0,
            width: 1024,
            height: 768,
        };
        let frames: Vec<Vec<u8>> = (0..3).map(|k| pattern(1024 * 768 * 4, k)).collect();
        let reader = std::thread::spawn(move || read_updates(&mut theirs, 3 * 1024 * 768 * 4));

        for f in &frames {
            display.update_mapped(0, rect, f).expect("update");
        }

        let got: Vec<u8> = reader.join().expect("reader").concat();
        assert_eq!(got, frames.concat());
        assert!(
            display.splice.is_some(),
            "the kernel took the pages by reference"
        );
        assert_eq!(display.dropped_updates(), 0);
    }

    #[test]
    fn test_a_stalled_mapped_update_keeps_the_stream_whole() {
        let (ours, mut theirs) = UnixStream::pair().expect("socketpair");
        let mut display = display_on(ours, u32::MAX, u32::MAX);
        // The default send buffer is smaller than one band: the first
        // update stalls.
        let rect = Rect {
            x: 0,
            y: 0,
            width: 1024,
            height: 1024,
        };
        let frame = pattern(1024 * 1024 * 4, 3);

        // Nobody reads: the first message is cut and kept, the rest dropped.
        for _ in 0..4 {
            display.update_mapped(0, rect, &frame).expect("stall");
        }
        assert!(display.pending());
        assert!(display.dropped_updates() >= 1);
        // The frontend reads again: the cut message completes, and a new
        // update follows it whole.
        let reader = std::thread::spawn(move || {
            let mut got: Vec<Vec<u8>> = Vec::new();
            while got.last().is_none_or(|p| p.len() != 128 * 4096) {
                got.extend(read_updates(&mut theirs, 1));
            }
            got
        });
        while !display.ready_for_update() {}
        display
            .update_mapped(
                0,
                Rect {
                    height: 128,
                    ..rect
                },
                &frame[..128 * 4096],
            )
            .expect("update");
        let got = reader.join().expect("reader");
        // The cut band is the first 1 MiB band of the frame, the new
        // update the last message; nothing torn in between.
        assert_eq!(got[0], frame[..1 << 20]);
        assert_eq!(got[got.len() - 1], frame[..128 * 4096]);
        assert!(!display.pending());
    }

    #[test]
    fn test_giving_up_splicing_sends_the_piped_bytes_by_copy() {
        let (ours, mut theirs) = UnixStream::pair().expect("socketpair");
        let mut display = display_on(ours, u32::MAX, u32::MAX);
        let bytes = pattern(256 << 10, 9);
        let mut pipe_bytes = 0;
        while pipe_bytes < bytes.len() {
            pipe_bytes += display
                .splice
                .as_mut()
                .expect("pipe")
                .vmsplice(&bytes[pipe_bytes..])
                .expect("vmsplice");
        }
        display.out.extend_from_slice(b"tail");

        display
            .stop_splicing(&io::Error::from_raw_os_error(libc::EINVAL))
            .expect("unsplice");
        assert!(display.splice.is_none());
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; (256 << 10) + 4];
            theirs.read_exact(&mut got).expect("read");
            got
        });
        assert!(display
            .flush_out(Instant::now() + UPDATE_DEADLINE)
            .expect("flush"));

        let got = reader.join().expect("reader");
        assert_eq!(&got[..256 << 10], &bytes[..]);
        assert_eq!(&got[256 << 10..], b"tail");
    }

    #[test]
    fn test_remaining_skips_whole_and_partial_parts() {
        let a = [1u8, 2, 3];
        let b = [4u8, 5];

        let rest = remaining(&[&a, &b], 4);

        assert_eq!(rest, vec![&[5u8][..]]);
    }

    #[test]
    fn test_connect_to_a_silent_frontend_times_out() {
        let (ours, _theirs) = UnixStream::pair().expect("socketpair");
        let started = Instant::now();

        let result = Display::connect(ours);

        assert!(result.is_err());
        assert!(started.elapsed() < REQUEST_DEADLINE * 3);
    }

    #[test]
    fn test_updates_to_a_frontend_that_stops_reading_are_dropped_quickly() {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        ours.set_nonblocking(true).expect("nonblocking");
        let mut display = display_on(ours, u32::MAX, u32::MAX);
        let rect = Rect {
            x: 0,
            y: 0,
            width: 512,
            height: 512,
        };
        let pixels = vec![7u8; 512 * 512 * 4];
        let started = Instant::now();

        // Nobody reads `theirs`: 20 full updates of 1 MiB.
        for _ in 0..20 {
            display
                .update(0, rect, &pixels)
                .expect("a stall is not an error");
        }

        // One deadline for the message cut by the stall, then short probes.
        assert!(
            started.elapsed() < UPDATE_DEADLINE + STALL_PROBE * 30,
            "{:?}",
            started.elapsed()
        );
        assert!(display.dropped_updates() >= 18);
        drop(theirs);
    }

    #[test]
    fn test_update_beyond_the_announced_display_is_clipped() {
        let (ours, mut theirs) = UnixStream::pair().expect("socketpair");
        ours.set_nonblocking(true).expect("nonblocking");
        let mut display = display_on(ours, 4, 2);
        let rect = Rect {
            x: 2,
            y: 0,
            width: 4,
            height: 4,
        };
        let pixels: Vec<u8> = (0..64).collect();

        display.update(0, rect, &pixels).expect("update");

        let mut msg = vec![0u8; 12 + 20 + 2 * 2 * 4];
        theirs.read_exact(&mut msg).expect("one clipped message");
        let word = |i: usize| u32::from_le_bytes(msg[i..i + 4].try_into().expect("4"));
        assert_eq!((word(0), word(8)), (req::UPDATE, 20 + 16));
        assert_eq!((word(20), word(24), word(28)), (0, 2, 2));
        // Rows 0 and 1, first two pixels of each.
        assert_eq!(&msg[32..40], &pixels[0..8]);
        assert_eq!(&msg[40..48], &pixels[16..24]);
    }
}
