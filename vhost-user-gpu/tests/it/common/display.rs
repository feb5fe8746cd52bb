//! The frontend side of the vhost-user GPU display socket
//! (VHOST_USER_GPU_*), served by a thread the way QEMU's vhost-user-gpu-pci
//! does: it answers the daemon's requests and records every message.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use super::{wire, TIMEOUT};

/// A message the daemon sent on the display socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DisplayMsg {
    /// VHOST_USER_GPU_SCANOUT.
    Scanout {
        /// Scanout index.
        scanout_id: u32,
        /// Width (0 disables the scanout).
        width: u32,
        /// Height.
        height: u32,
    },
    /// VHOST_USER_GPU_UPDATE with its pixels.
    Update {
        /// Scanout index.
        scanout_id: u32,
        /// Rectangle of the update.
        rect: wire::Rect,
        /// Pixel bytes, `width * 4` per row.
        data: Vec<u8>,
    },
    /// VHOST_USER_GPU_CURSOR_POS.
    CursorPos {
        /// Scanout index.
        scanout_id: u32,
        /// Position.
        x: u32,
        /// Position.
        y: u32,
    },
    /// VHOST_USER_GPU_CURSOR_POS_HIDE.
    CursorHide {
        /// Scanout index.
        scanout_id: u32,
    },
    /// VHOST_USER_GPU_CURSOR_UPDATE with its 64x64 image.
    CursorUpdate {
        /// Scanout index.
        scanout_id: u32,
        /// Position.
        x: u32,
        /// Position.
        y: u32,
        /// Hot spot.
        hot: (u32, u32),
        /// 64 * 64 * 4 bytes.
        data: Vec<u8>,
    },
    /// Anything else (request code and body).
    Other {
        /// Request code.
        request: u32,
        /// Body bytes.
        body: Vec<u8>,
    },
}

#[derive(Default)]
struct DisplayLog {
    msgs: Vec<DisplayMsg>,
    closed: bool,
    /// While set, the serving thread stops reading (a stalled frontend).
    paused: bool,
}

/// The frontend side of the vhost-user GPU display socket, served by a thread.
pub struct Display {
    log: Arc<(Mutex<DisplayLog>, Condvar)>,
    thread: Option<JoinHandle<()>>,
    /// Our end of the socket, kept to shut it down on drop.
    sock: UnixStream,
}

impl Display {
    pub(super) fn start(sock: UnixStream, width: u32, height: u32) -> Self {
        let log: Arc<(Mutex<DisplayLog>, Condvar)> = Arc::default();
        let served = sock.try_clone().expect("clone display socket");
        let thread_log = Arc::clone(&log);
        let thread = std::thread::spawn(move || serve_display(served, &thread_log, width, height));
        Self {
            log,
            thread: Some(thread),
            sock,
        }
    }

    /// Every message received so far.
    pub fn messages(&self) -> Vec<DisplayMsg> {
        self.log
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .msgs
            .clone()
    }

    /// Waits (bounded by [`TIMEOUT`]) until a message received at index
    /// `from` or later matches `pred`, and returns it with its index.
    pub fn wait_for(&self, from: usize, pred: impl Fn(&DisplayMsg) -> bool) -> (usize, DisplayMsg) {
        let deadline = Instant::now() + TIMEOUT;
        let (lock, cvar) = &*self.log;
        let mut log = lock.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some((i, m)) = log
                .msgs
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, m)| pred(m))
            {
                return (i, m.clone());
            }
            let now = Instant::now();
            assert!(
                now < deadline && !log.closed,
                "no matching display message; got {:?}",
                log.msgs
            );
            log = cvar
                .wait_timeout(log, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Stops (or resumes) reading the socket, like a frontend whose main
    /// loop is busy; the daemon's writes then block once the socket buffer
    /// is full.
    pub fn set_paused(&self, paused: bool) {
        let (lock, cvar) = &*self.log;
        lock.lock().unwrap_or_else(PoisonError::into_inner).paused = paused;
        cvar.notify_all();
    }

    /// Number of messages received so far.
    pub fn len(&self) -> usize {
        self.log
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .msgs
            .len()
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        // A paused thread waits on the condvar, not the socket: release it
        // first or the join below never returns.
        self.set_paused(false);
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_display(
    mut sock: UnixStream,
    log: &(Mutex<DisplayLog>, Condvar),
    width: u32,
    height: u32,
) {
    const REPLY: u32 = 0x4;
    // Messages are small except UPDATE (a full scanout at most): 64 MiB is
    // far above any legitimate one and keeps a corrupt header from making
    // the test allocate without bound.
    const MAX_BODY: usize = 64 << 20;
    loop {
        {
            let (lock, cvar) = log;
            let mut state = lock.lock().unwrap_or_else(PoisonError::into_inner);
            while state.paused {
                state = cvar.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
        }
        let mut hdr = [0u8; 12];
        if sock.read_exact(&mut hdr).is_err() {
            break;
        }
        let request = wire::le32(&hdr, 0);
        let size = wire::le32(&hdr, 8) as usize;
        assert!(
            size <= MAX_BODY,
            "display message {request} claims {size} bytes"
        );
        let mut body = vec![0u8; size];
        if sock.read_exact(&mut body).is_err() {
            break;
        }
        let reply = |sock: &mut UnixStream, payload: &[u8]| {
            let mut m = Vec::with_capacity(12 + payload.len());
            m.extend_from_slice(&request.to_le_bytes());
            m.extend_from_slice(&REPLY.to_le_bytes());
            m.extend_from_slice(&u32::try_from(payload.len()).expect("small").to_le_bytes());
            m.extend_from_slice(payload);
            let _ = sock.write_all(&m);
        };
        let msg = match request {
            // GET_PROTOCOL_FEATURES: offer EDID (bit 0), like QEMU.
            1 => {
                reply(&mut sock, &1u64.to_le_bytes());
                continue;
            }
            // GET_DISPLAY_INFO: one enabled output of the configured size.
            3 => {
                let mut p = vec![0u8; wire::RESP_DISPLAY_INFO_SIZE];
                p[0..4].copy_from_slice(&wire::RESP_OK_DISPLAY_INFO.to_le_bytes());
                p[32..36].copy_from_slice(&width.to_le_bytes());
                p[36..40].copy_from_slice(&height.to_le_bytes());
                p[40..44].copy_from_slice(&1u32.to_le_bytes());
                reply(&mut sock, &p);
                continue;
            }
            // GET_EDID: the frontend's own 128-byte block (see FRONTEND_EDID).
            11 => {
                let mut p = vec![0u8; wire::RESP_EDID_SIZE];
                p[0..4].copy_from_slice(&wire::RESP_OK_EDID.to_le_bytes());
                p[24..28].copy_from_slice(&128u32.to_le_bytes());
                p[32..160].copy_from_slice(&frontend_edid());
                reply(&mut sock, &p);
                continue;
            }
            4 if size >= 12 => DisplayMsg::CursorPos {
                scanout_id: wire::le32(&body, 0),
                x: wire::le32(&body, 4),
                y: wire::le32(&body, 8),
            },
            5 if size >= 4 => DisplayMsg::CursorHide {
                scanout_id: wire::le32(&body, 0),
            },
            6 if size >= 20 => DisplayMsg::CursorUpdate {
                scanout_id: wire::le32(&body, 0),
                x: wire::le32(&body, 4),
                y: wire::le32(&body, 8),
                hot: (wire::le32(&body, 12), wire::le32(&body, 16)),
                data: body[20..].to_vec(),
            },
            7 if size >= 12 => DisplayMsg::Scanout {
                scanout_id: wire::le32(&body, 0),
                width: wire::le32(&body, 4),
                height: wire::le32(&body, 8),
            },
            8 if size >= 20 => DisplayMsg::Update {
                scanout_id: wire::le32(&body, 0),
                rect: wire::Rect::new(
                    wire::le32(&body, 4),
                    wire::le32(&body, 8),
                    wire::le32(&body, 12),
                    wire::le32(&body, 16),
                ),
                data: body[20..].to_vec(),
            },
            _ => DisplayMsg::Other { request, body },
        };
        let (lock, cvar) = log;
        // A waiter that panicked poisons the lock; keep recording anyway.
        lock.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .msgs
            .push(msg);
        cvar.notify_all();
    }
    let (lock, cvar) = log;
    lock.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
    cvar.notify_all();
}

/// The EDID block the fake display frontend hands out: the fixed header,
/// a recognisable manufacturer id (0x1234) and a valid checksum.
pub fn frontend_edid() -> [u8; 128] {
    let mut edid = [0u8; 128];
    edid[..8].copy_from_slice(&[0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]);
    edid[8] = 0x12;
    edid[9] = 0x34;
    let sum = edid[..127].iter().fold(0u8, |a, b| a.wrapping_add(*b));
    edid[127] = 0u8.wrapping_sub(sum);
    edid
}
