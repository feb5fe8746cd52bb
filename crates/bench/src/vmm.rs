//! A lean vhost-user frontend: starts a daemon binary, gives it memfd guest
//! RAM, two split virtqueues laid out in that RAM, eventfd kicks and calls,
//! and a display socket; then submits prebuilt descriptor chains in
//! batches, one kick per batch, and waits for their used elements the way a
//! Linux guest with EVENT_IDX does (re-arm `used_event`, sleep on the call
//! eventfd).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use vhost::vhost_user::message::{VhostUserHeaderFlag, VhostUserProtocolFeatures};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

use crate::display::Display;
use crate::mem::GuestRam;

/// Control queue index.
pub const CTRL_Q: usize = 0;
/// Descriptors per queue (QEMU's vhost-user-gpu-pci uses 256).
pub const QUEUE_SIZE: u16 = 256;
/// `virtio_gpu_ctrl_hdr.type` of an OK response without data.
pub const RESP_OK_NODATA: u32 = 0x1100;
/// How long one wait (socket, used element, display) may take.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// GPA of each queue's descriptor table; avail at +0x1000, used at +0x2000.
const RING_BASES: [u64; 2] = [0x0, 0x4000];
/// The "VMM virtual address" of GPA 0 told to the backend.
const VA_OFFSET: u64 = 0x7f00_0000_0000;
const VRING_DESC_F_NEXT: u16 = 1;
const VRING_DESC_F_WRITE: u16 = 2;
const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << 28;
const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;
const VHOST_USER_F_PROTOCOL_FEATURES: u64 = 1 << 30;
const VIRTIO_F_VERSION_1: u64 = 1 << 32;
const VIRTIO_GPU_F_EDID: u64 = 1 << 1;
const VHOST_USER_GPU_SET_SOCKET: u32 = 33;

/// Which daemon binary and how it is started.
#[derive(Clone, Debug)]
pub struct DaemonSpec {
    /// Short name for the table ("ours", "qemu").
    pub name: &'static str,
    /// Path of the binary.
    pub binary: PathBuf,
    /// Arguments after `--socket-path PATH`.
    pub args: Vec<String>,
}

/// One descriptor chain: readable segments then one writable response.
#[derive(Clone, Debug)]
pub struct Chain {
    /// `(gpa, len)` of each device-readable segment.
    pub readable: Vec<(u64, u32)>,
    /// `(gpa, len)` of the device-writable response buffer.
    pub response: (u64, u32),
}

/// Chains whose descriptors are already in a queue's descriptor table.
#[derive(Clone, Debug)]
pub struct Batch {
    queue: usize,
    heads: Vec<u16>,
    responses: Vec<u64>,
}

impl Batch {
    /// Number of chains (commands).
    pub fn len(&self) -> usize {
        self.heads.len()
    }
}

struct Ring {
    desc: u64,
    avail: u64,
    used: u64,
    avail_idx: u16,
    kick: EventFd,
    call: EventFd,
}

impl Ring {
    fn new(base: u64) -> std::io::Result<Self> {
        Ok(Self {
            desc: base,
            avail: base + 0x1000,
            used: base + 0x2000,
            avail_idx: 0,
            kick: EventFd::new(EFD_NONBLOCK)?,
            call: EventFd::new(EFD_NONBLOCK)?,
        })
    }

    /// `used_event`, written by the driver at the end of the avail ring.
    fn used_event(&self) -> u64 {
        self.avail + 4 + 2 * u64::from(QUEUE_SIZE)
    }

    /// `avail_event`, written by the device at the end of the used ring.
    fn avail_event(&self) -> u64 {
        self.used + 4 + 8 * u64::from(QUEUE_SIZE)
    }
}

/// A running daemon and the frontend side of its connection.
pub struct Vmm {
    /// Name of the daemon ("ours", "qemu").
    pub name: &'static str,
    /// Guest RAM shared with the daemon.
    pub ram: GuestRam,
    /// The display socket server.
    pub display: Display,
    child: Child,
    frontend: Frontend,
    rings: [Ring; 2],
    event_idx: bool,
    dir: PathBuf,
}

/// `vring_need_event`: true if moving an index from `old` to `new` crosses
/// `event`.
fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

fn wait_for_socket(path: &Path, child: &mut Child, log: &Path) -> Result<UnixStream, String> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Ok(s) = UnixStream::connect(path) {
            return Ok(s);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!(
                "daemon exited with {status} before listening:\n{text}"
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!("{} never appeared", path.display()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl Vmm {
    /// Starts `spec` with `ram_size` bytes of guest RAM and a display of
    /// `width` x `height`, negotiates, and sets up both queues.
    pub fn start(
        spec: &DaemonSpec,
        ram_size: usize,
        width: u32,
        height: u32,
    ) -> Result<Self, String> {
        let dir =
            std::env::temp_dir().join(format!("vugpu-bench-{}-{}", std::process::id(), spec.name));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let socket = dir.join("gpu.sock");
        let log_path = dir.join("daemon.log");
        let log = File::create(&log_path).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut child = Command::new(&spec.binary)
            .arg("--socket-path")
            .arg(&socket)
            .args(&spec.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", spec.binary.display()))?;
        let stream = match wait_for_socket(&socket, &mut child, &log_path) {
            Ok(s) => s,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let ram = GuestRam::new(&format!("vugpu-bench-{}", spec.name), ram_size)
            .map_err(|e| format!("guest RAM: {e}"))?;
        let raw = stream.try_clone().map_err(|e| e.to_string())?;
        let (ours, theirs) = UnixStream::pair().map_err(|e| e.to_string())?;
        let display = Display::start(ours, width, height).map_err(|e| e.to_string())?;
        let rings = [
            Ring::new(RING_BASES[0]).map_err(|e| e.to_string())?,
            Ring::new(RING_BASES[1]).map_err(|e| e.to_string())?,
        ];
        let mut vmm = Self {
            name: spec.name,
            ram,
            display,
            child,
            frontend: Frontend::from_stream(stream, 2),
            rings,
            event_idx: false,
            dir,
        };
        vmm.setup(&raw, &theirs)
            .map_err(|e| format!("{}: vhost-user setup: {e}", spec.name))?;
        Ok(vmm)
    }

    fn setup(&mut self, raw: &UnixStream, display_peer: &UnixStream) -> Result<(), String> {
        let e = |what: &str| {
            let what = what.to_owned();
            move |err: vhost::Error| format!("{what}: {err}")
        };
        let f = &mut self.frontend;
        f.set_owner().map_err(e("SET_OWNER"))?;
        let offered = f.get_features().map_err(e("GET_FEATURES"))?;
        let mut features = offered
            & (VIRTIO_F_VERSION_1
                | VHOST_USER_F_PROTOCOL_FEATURES
                | VIRTIO_RING_F_INDIRECT_DESC
                | VIRTIO_RING_F_EVENT_IDX
                | VIRTIO_GPU_F_EDID);
        if offered & VHOST_USER_F_PROTOCOL_FEATURES != 0 {
            let proto = f
                .get_protocol_features()
                .map_err(e("GET_PROTOCOL_FEATURES"))?;
            let acked = proto
                & (VhostUserProtocolFeatures::REPLY_ACK
                    | VhostUserProtocolFeatures::CONFIG
                    | VhostUserProtocolFeatures::MQ);
            f.set_protocol_features(acked)
                .map_err(e("SET_PROTOCOL_FEATURES"))?;
            if acked.contains(VhostUserProtocolFeatures::REPLY_ACK) {
                f.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
            }
        } else {
            features &= !VHOST_USER_F_PROTOCOL_FEATURES;
        }
        self.event_idx = features & VIRTIO_RING_F_EVENT_IDX != 0;

        // VHOST_USER_GPU_SET_SOCKET (QEMU sends it before the rings start;
        // QEMU's C daemon processes no queue before the display answered).
        let mut hdr = [0u8; 12];
        hdr[0..4].copy_from_slice(&VHOST_USER_GPU_SET_SOCKET.to_le_bytes());
        hdr[4..8].copy_from_slice(&1u32.to_le_bytes());
        let sent = raw
            .send_with_fds(&[&hdr[..]], &[display_peer.as_raw_fd()])
            .map_err(|err| format!("GPU_SET_SOCKET: {err}"))?;
        if sent != hdr.len() {
            return Err("GPU_SET_SOCKET: short send".into());
        }
        let f = &mut self.frontend;
        f.get_features().map_err(e("GET_FEATURES (sync)"))?;
        f.set_features(features).map_err(e("SET_FEATURES"))?;
        let region = VhostUserMemoryRegionInfo {
            guest_phys_addr: 0,
            memory_size: self.ram.size(),
            userspace_addr: VA_OFFSET,
            mmap_offset: 0,
            mmap_handle: self.ram.file().as_raw_fd(),
        };
        f.set_mem_table(&[region]).map_err(e("SET_MEM_TABLE"))?;
        for q in 0..2 {
            let ring = &self.rings[q];
            let cfg = VringConfigData {
                queue_max_size: QUEUE_SIZE,
                queue_size: QUEUE_SIZE,
                flags: 0,
                desc_table_addr: ring.desc + VA_OFFSET,
                used_ring_addr: ring.used + VA_OFFSET,
                avail_ring_addr: ring.avail + VA_OFFSET,
                log_addr: None,
            };
            f.set_vring_num(q, QUEUE_SIZE).map_err(e("SET_VRING_NUM"))?;
            f.set_vring_base(q, 0).map_err(e("SET_VRING_BASE"))?;
            f.set_vring_addr(q, &cfg).map_err(e("SET_VRING_ADDR"))?;
            f.set_vring_kick(q, &ring.kick)
                .map_err(e("SET_VRING_KICK"))?;
            f.set_vring_call(q, &ring.call)
                .map_err(e("SET_VRING_CALL"))?;
            if features & VHOST_USER_F_PROTOCOL_FEATURES != 0 {
                f.set_vring_enable(q, true).map_err(e("SET_VRING_ENABLE"))?;
            }
        }
        f.get_features().map_err(e("GET_FEATURES (sync)"))?;
        Ok(())
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The daemon's log so far (its stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// Writes the descriptors of `chains` into queue `q`'s table from index
    /// `first` on. The batch can then be run any number of times (the
    /// device never writes the descriptor table).
    pub fn prepare(&mut self, q: usize, first: u16, chains: &[Chain]) -> Batch {
        let desc = self.rings[q].desc;
        let mut idx = first;
        let mut heads = Vec::with_capacity(chains.len());
        let mut responses = Vec::with_capacity(chains.len());
        for chain in chains {
            heads.push(idx);
            responses.push(chain.response.0);
            let n = chain.readable.len() + 1;
            for i in 0..n {
                let (addr, len, mut flags) = match chain.readable.get(i) {
                    Some(&(addr, len)) => (addr, len, 0),
                    None => (chain.response.0, chain.response.1, VRING_DESC_F_WRITE),
                };
                let next = idx + 1;
                if i + 1 < n {
                    flags |= VRING_DESC_F_NEXT;
                }
                let mut raw = [0u8; 16];
                raw[0..8].copy_from_slice(&addr.to_le_bytes());
                raw[8..12].copy_from_slice(&len.to_le_bytes());
                raw[12..14].copy_from_slice(&flags.to_le_bytes());
                raw[14..16].copy_from_slice(&(next % QUEUE_SIZE).to_le_bytes());
                assert!(idx < QUEUE_SIZE, "batch does not fit the descriptor table");
                self.ram.write(desc + 16 * u64::from(idx), &raw);
                idx = next;
            }
        }
        Batch {
            queue: q,
            heads,
            responses,
        }
    }

    /// Publishes every chain of `batch`, kicks once (if the device asks
    /// for kicks) and waits until all of them are used.
    pub fn run(&mut self, batch: &Batch) -> Result<(), String> {
        let ring = &mut self.rings[batch.queue];
        let old = ring.avail_idx;
        let mut idx = old;
        for &head in &batch.heads {
            let slot = u64::from(idx % QUEUE_SIZE);
            self.ram
                .write(ring.avail + 4 + 2 * slot, &head.to_le_bytes());
            idx = idx.wrapping_add(1);
        }
        // Ask for a call as soon as anything is used (Linux's
        // virtqueue_enable_cb), then publish.
        if self.event_idx {
            let used = self.ram.load_u16(ring.used + 2);
            self.ram.store_u16(ring.used_event(), used);
        }
        fence(Ordering::SeqCst);
        self.ram.store_u16(ring.avail + 2, idx);
        ring.avail_idx = idx;
        fence(Ordering::SeqCst);
        let kick = !self.event_idx || need_event(self.ram.load_u16(ring.avail_event()), idx, old);
        if kick {
            ring.kick.write(1).map_err(|e| format!("kick: {e}"))?;
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let used = self.ram.load_u16(ring.used + 2);
            if used == idx {
                return Ok(());
            }
            if self.event_idx {
                self.ram.store_u16(ring.used_event(), used);
                fence(Ordering::SeqCst);
                if self.ram.load_u16(ring.used + 2) == idx {
                    return Ok(());
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "{}: {} of {} chains used after {TIMEOUT:?}",
                    self.name,
                    used.wrapping_sub(old),
                    batch.len()
                ));
            }
            let mut pfd = libc::pollfd {
                fd: ring.call.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: `pfd` is a valid pollfd array of length 1 that lives
            // across the call.
            let r = unsafe { libc::poll(&mut pfd, 1, 1000) };
            if r > 0 {
                let _ = ring.call.read();
            }
        }
    }

    /// Response types of `batch` that are not OK_NODATA, as
    /// `(index, type)`.
    pub fn failed_responses(&self, batch: &Batch) -> Vec<(usize, u32)> {
        batch
            .responses
            .iter()
            .enumerate()
            .map(|(i, &gpa)| (i, self.ram.read_u32(gpa)))
            .filter(|&(_, t)| t != RESP_OK_NODATA)
            .collect()
    }

    /// Clears the response buffers of `batch` so a stale OK cannot hide a
    /// missing response.
    pub fn clear_responses(&self, batch: &Batch) {
        for &gpa in &batch.responses {
            self.ram.write(gpa, &[0u8; 24]);
        }
    }

    /// Disconnects and stops the daemon.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
