//! The frontend end of the vhost-user GPU display socket
//! (VHOST_USER_GPU_SET_SOCKET), served by a thread as QEMU's
//! vhost-user-gpu-pci does: it answers GET_PROTOCOL_FEATURES,
//! GET_DISPLAY_INFO and GET_EDID and drains everything else, counting the
//! pixel bytes of UPDATE messages.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const GET_PROTOCOL_FEATURES: u32 = 1;
const GET_DISPLAY_INFO: u32 = 3;
const SCANOUT: u32 = 7;
const UPDATE: u32 = 8;
const GET_EDID: u32 = 11;
const FLAG_REPLY: u32 = 0x4;
/// VHOST_USER_GPU_PROTOCOL_F_EDID, what QEMU offers.
const PROTOCOL_F_EDID: u64 = 1;
const RESP_OK_DISPLAY_INFO: u32 = 0x1101;
const RESP_OK_EDID: u32 = 0x1104;
/// `virtio_gpu_resp_display_info`: header + 16 * (rect + enabled + flags).
const DISPLAY_INFO_SIZE: usize = 24 + 16 * 24;
/// `virtio_gpu_resp_edid`: header + size + padding + 1024 bytes.
const EDID_RESP_SIZE: usize = 24 + 8 + 1024;
/// Largest message accepted (a 16384x16384 update would be 1 GiB; nothing
/// the bench does comes close to this).
const MAX_BODY: usize = 64 << 20;

#[derive(Default)]
struct Counters {
    update_bytes: u64,
    updates: u64,
    scanouts: u64,
    closed: bool,
}

/// The display socket server.
pub struct Display {
    state: Arc<(Mutex<Counters>, Condvar)>,
    sock: UnixStream,
    thread: Option<JoinHandle<()>>,
}

impl Display {
    /// Serves `sock`, reporting a `width` x `height` output.
    pub fn start(sock: UnixStream, width: u32, height: u32) -> std::io::Result<Self> {
        let state: Arc<(Mutex<Counters>, Condvar)> = Arc::default();
        let served = sock.try_clone()?;
        let thread_state = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("display".into())
            .spawn(move || serve(served, &thread_state, width, height))?;
        Ok(Self {
            state,
            sock,
            thread: Some(thread),
        })
    }

    /// Pixel bytes of UPDATE messages received so far.
    pub fn update_bytes(&self) -> u64 {
        self.lock().update_bytes
    }

    /// (UPDATE messages, SCANOUT messages) received so far.
    pub fn message_counts(&self) -> (u64, u64) {
        let c = self.lock();
        (c.updates, c.scanouts)
    }

    /// Waits until at least `bytes` UPDATE pixel bytes arrived in total.
    pub fn wait_update_bytes(&self, bytes: u64, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.state;
        let mut c = lock.lock().unwrap_or_else(PoisonError::into_inner);
        while c.update_bytes < bytes {
            let now = Instant::now();
            if now >= deadline || c.closed {
                return Err(format!(
                    "display: {} of {bytes} update bytes arrived (closed: {})",
                    c.update_bytes, c.closed
                ));
            }
            c = cvar
                .wait_timeout(c, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.state.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(v)
}

fn reply(sock: &mut UnixStream, request: u32, payload: &[u8]) -> std::io::Result<()> {
    let mut m = Vec::with_capacity(12 + payload.len());
    m.extend_from_slice(&request.to_le_bytes());
    m.extend_from_slice(&FLAG_REPLY.to_le_bytes());
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    m.extend_from_slice(&len.to_le_bytes());
    m.extend_from_slice(payload);
    sock.write_all(&m)
}

fn serve(mut sock: UnixStream, state: &(Mutex<Counters>, Condvar), width: u32, height: u32) {
    // One reusable body buffer: an UPDATE of a full 1080p frame is 8 MB and
    // arrives every frame; allocating it per message would measure malloc.
    let mut body = Vec::new();
    loop {
        let mut hdr = [0u8; 12];
        if sock.read_exact(&mut hdr).is_err() {
            break;
        }
        let request = le32(&hdr, 0);
        let size = le32(&hdr, 8) as usize;
        if size > MAX_BODY {
            eprintln!("display: message {request} claims {size} bytes, closing");
            break;
        }
        if body.len() < size {
            body.resize(size, 0);
        }
        if sock.read_exact(&mut body[..size]).is_err() {
            break;
        }
        let answered = match request {
            GET_PROTOCOL_FEATURES => reply(&mut sock, request, &PROTOCOL_F_EDID.to_le_bytes()),
            GET_DISPLAY_INFO => {
                let mut p = [0u8; DISPLAY_INFO_SIZE];
                p[0..4].copy_from_slice(&RESP_OK_DISPLAY_INFO.to_le_bytes());
                p[32..36].copy_from_slice(&width.to_le_bytes());
                p[36..40].copy_from_slice(&height.to_le_bytes());
                p[40..44].copy_from_slice(&1u32.to_le_bytes());
                reply(&mut sock, request, &p)
            }
            GET_EDID => {
                let mut p = [0u8; EDID_RESP_SIZE];
                p[0..4].copy_from_slice(&RESP_OK_EDID.to_le_bytes());
                p[24..28].copy_from_slice(&128u32.to_le_bytes());
                p[32..40].copy_from_slice(&[0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]);
                reply(&mut sock, request, &p)
            }
            _ => Ok(()),
        };
        if answered.is_err() {
            break;
        }
        let (lock, cvar) = state;
        let mut c = lock.lock().unwrap_or_else(PoisonError::into_inner);
        match request {
            // scanout_id, x, y, width, height, then pixels.
            UPDATE if size >= 20 => {
                c.update_bytes += (size - 20) as u64;
                c.updates += 1;
            }
            SCANOUT => c.scanouts += 1,
            _ => {}
        }
        cvar.notify_all();
    }
    let (lock, cvar) = state;
    lock.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
    cvar.notify_all();
}
