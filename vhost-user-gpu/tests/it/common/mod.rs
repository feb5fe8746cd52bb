//! Test VMM for the daemon's integration tests.
//!
//! [`TestVmm`] starts the real `vhost-user-gpu` binary, connects to its
//! socket as a vhost-user frontend, gives it memfd-backed guest memory and
//! two split virtqueues laid out by hand in that memory, and hands it the
//! display socket (VHOST_USER_GPU_SET_SOCKET) whose other end a thread
//! serves like QEMU's vhost-user-gpu-pci does. Requests are hand-encoded
//! (see [`wire`]), placed in guest memory, kicked; responses come back
//! through the used ring.
//!
//! Guest-physical layout of region 0 (64 MiB at GPA 0):
//!
//! | GPA                 | content                                 |
//! |---------------------|-----------------------------------------|
//! | 0x0000..0x3000      | control queue: desc table, avail, used  |
//! | 0x4000..0x7000      | cursor queue                            |
//! | 0x10000..0x80000    | request buffers of the chain in flight  |
//! | 0x80000..0xff000    | response buffers                        |
//! | 0xff000..0x100000   | indirect descriptor table               |
//! | [`DATA_BASE`]..     | free for tests (backing pages)          |

#![allow(dead_code)]

pub mod display;
pub mod wire;

pub use display::{Display, DisplayMsg};

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use vhost::vhost_user::message::{
    VhostUserConfigFlags, VhostUserHeaderFlag, VhostUserProtocolFeatures,
};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

/// Control queue index.
pub const CTRL_Q: usize = 0;
/// Cursor queue index.
pub const CURSOR_Q: usize = 1;
/// Size of guest memory region 0.
pub const MEM_SIZE: u64 = 64 << 20;
/// First GPA tests may use freely for backing pages.
pub const DATA_BASE: u64 = 0x10_0000;
/// Guest page size used to lay out backing.
pub const PAGE: u64 = 4096;
/// GPA of the optional second region (above 4 GiB, like a real VM's high RAM).
pub const HIGH_BASE: u64 = 0x1_0000_0000;
/// Size of the optional second region.
pub const HIGH_SIZE: u64 = 16 << 20;
/// How long any single wait (socket, response, display message) may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

const QUEUE_SIZE: u16 = 256;
const RING_BASES: [u64; 2] = [0x0, 0x4000];
const REQ_AREA: (u64, u64) = (0x1_0000, 0x8_0000);
const RESP_AREA: (u64, u64) = (0x8_0000, 0xf_f000);
/// One page for an indirect descriptor table.
const INDIRECT_TABLE: u64 = 0xf_f000;
/// The "VMM virtual address" of GPA 0 we tell the backend. Any value works
/// as long as ring addresses use the same offset; a fixed one keeps ring
/// addresses valid across memory-table updates.
pub const VA_OFFSET: u64 = 0x7f00_0000_0000;
const VRING_DESC_F_NEXT: u16 = 1;
const VRING_DESC_F_WRITE: u16 = 2;
const VRING_DESC_F_INDIRECT: u16 = 4;
const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << 28;
const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;
const VIRTIO_F_VERSION_1: u64 = 1 << 32;
const VHOST_USER_F_PROTOCOL_FEATURES: u64 = 1 << 30;
const VHOST_USER_GPU_SET_SOCKET: u32 = 33;

static INSTANCE: AtomicU32 = AtomicU32::new(0);
static MARK: AtomicU32 = AtomicU32::new(0);
/// Cursor coordinate used by [`TestVmm::display_mark`] (far off screen).
const MARK_X: u32 = 0xb000;

/// One descriptor of a chain: guest address, length, device-writable.
#[derive(Clone, Copy, Debug)]
pub struct Desc {
    /// Guest-physical address of the buffer.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// True if the device writes this buffer.
    pub write: bool,
}

/// A completed chain.
#[derive(Clone, Debug)]
pub struct Response {
    /// `len` field of the used element: bytes the device wrote.
    pub used_len: u32,
    /// The whole response buffer as it is after completion.
    pub bytes: Vec<u8>,
}

impl Response {
    /// `hdr.type`.
    pub fn type_(&self) -> u32 {
        wire::le32(&self.bytes, 0)
    }
    /// `hdr.flags`.
    pub fn flags(&self) -> u32 {
        wire::le32(&self.bytes, 4)
    }
    /// `hdr.fence_id`.
    pub fn fence_id(&self) -> u64 {
        wire::le64(&self.bytes, 8)
    }
    /// `hdr.ctx_id`.
    pub fn ctx_id(&self) -> u32 {
        wire::le32(&self.bytes, 16)
    }
    /// The bytes the device reported as written.
    pub fn written(&self) -> &[u8] {
        let n = (self.used_len as usize).min(self.bytes.len());
        &self.bytes[..n]
    }
}

/// One split virtqueue driven from the guest side.
struct Ring {
    desc: u64,
    avail: u64,
    used: u64,
    next_desc: u16,
    avail_idx: u16,
    last_used: u16,
    kick: EventFd,
    call: EventFd,
}

impl Ring {
    fn new(base: u64) -> Self {
        let size = u64::from(QUEUE_SIZE);
        Self {
            desc: base,
            avail: base + 16 * size,
            used: base + 0x2000,
            next_desc: 0,
            avail_idx: 0,
            last_used: 0,
            kick: EventFd::new(EFD_NONBLOCK).expect("kick eventfd"),
            call: EventFd::new(EFD_NONBLOCK).expect("call eventfd"),
        }
    }

    fn config(&self) -> VringConfigData {
        VringConfigData {
            queue_max_size: QUEUE_SIZE,
            queue_size: QUEUE_SIZE,
            flags: 0,
            desc_table_addr: self.desc + VA_OFFSET,
            used_ring_addr: self.used + VA_OFFSET,
            avail_ring_addr: self.avail + VA_OFFSET,
            log_addr: None,
        }
    }
}

/// Options for [`TestVmm::start_with`].
#[derive(Clone, Debug)]
pub struct VmmOptions {
    /// Extra daemon arguments (after `--socket-path`).
    pub args: Vec<String>,
    /// Send a display socket (VHOST_USER_GPU_SET_SOCKET).
    pub display: bool,
    /// Add a second memory region at [`HIGH_BASE`].
    pub high_region: bool,
    /// Negotiate VIRTIO_RING_F_EVENT_IDX (as Linux does when offered).
    pub event_idx: bool,
    /// Size the fake display frontend reports in GET_DISPLAY_INFO
    /// (default: the daemon's --width/--height).
    pub display_size: Option<(u32, u32)>,
    /// Leave a stale regular file at the socket path before starting.
    pub stale_socket_file: bool,
    /// Start the daemon with `--fd=3` on one end of a connected socket pair
    /// (as libvirt does) instead of `--socket-path`; the daemon also
    /// inherits the write end of a pipe at [`INHERITED_FD`].
    pub inherit_fd: bool,
    /// Start the daemon with `--fd=3` on a listening socket bound at the
    /// socket path (the test then connects to that path).
    pub inherit_listener: bool,
}

/// Descriptor number of the extra pipe end a `--fd` daemon inherits (like
/// libvirt's locked pid file), which it must keep open.
pub const INHERITED_FD: i32 = 4;

impl VmmOptions {
    /// Default options with the given daemon arguments.
    pub fn new(args: &[&str]) -> Self {
        Self {
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            display: true,
            high_region: false,
            event_idx: true,
            display_size: None,
            stale_socket_file: false,
            inherit_fd: false,
            inherit_listener: false,
        }
    }
}

/// A memory region we gave the daemon: our mapping plus its memfd.
struct Region {
    gpa: u64,
    size: u64,
    file: File,
}

/// The daemon under test and the VMM side of its connection.
pub struct TestVmm {
    /// The daemon process.
    pub child: Option<Child>,
    /// Temporary directory holding the sockets and logs.
    pub dir: PathBuf,
    /// Path of the vhost-user socket.
    pub socket_path: PathBuf,
    /// Path of the metrics unix socket.
    pub metrics_path: PathBuf,
    frontend: Option<Frontend>,
    /// Raw clone of the vhost-user connection for messages `Frontend` lacks.
    raw: Option<UnixStream>,
    /// Guest memory as the VMM sees it.
    pub mem: GuestMemoryMmap,
    regions: Vec<Region>,
    rings: [Ring; 2],
    /// The display socket server, if requested.
    pub display: Option<Display>,
    /// Virtio features acked.
    pub features: u64,
    /// vhost-user protocol features acked.
    pub protocol_features: VhostUserProtocolFeatures,
    /// The options the daemon was started with (reused by `reconnect`).
    opts: VmmOptions,
    /// Read end of the pipe whose write end a `--fd` daemon inherited.
    pub inherited_pipe: Option<File>,
}

/// A memfd of `size` bytes.
pub fn memfd(name: &str, size: u64) -> File {
    let cname = std::ffi::CString::new(name).expect("memfd name");
    // SAFETY: `cname` is a valid NUL-terminated string that outlives the call;
    // memfd_create has no other memory-safety preconditions.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` was just returned by memfd_create, is valid and owned by
    // nothing else, so `File` may take ownership of it.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(size).expect("size memfd");
    file
}

fn build_memory(regions: &[Region]) -> GuestMemoryMmap {
    let ranges: Vec<_> = regions
        .iter()
        .map(|r| {
            (
                GuestAddress(r.gpa),
                usize::try_from(r.size).expect("region size"),
                Some(FileOffset::new(r.file.try_clone().expect("dup memfd"), 0)),
            )
        })
        .collect();
    GuestMemoryMmap::from_ranges_with_files(&ranges).expect("map guest memory")
}

fn arg_value(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

impl TestVmm {
    /// Starts a daemon with `args` and a display socket, fully set up.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with(VmmOptions::new(args))
    }

    /// Starts a daemon with the given options, fully set up.
    pub fn start_with(opts: VmmOptions) -> Self {
        let n = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("vugpu-it-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let socket_path = dir.join("gpu.sock");
        let metrics_path = dir.join("metrics.sock");

        if opts.stale_socket_file {
            std::fs::write(&socket_path, b"stale").expect("write stale socket file");
        }
        let mut args = if opts.inherit_fd || opts.inherit_listener {
            vec!["--fd=3".to_owned()]
        } else {
            vec![
                "--socket-path".to_owned(),
                socket_path.display().to_string(),
            ]
        };
        if !opts.args.iter().any(|a| a == "--metrics-listen") {
            args.push("--metrics-listen".to_owned());
            args.push(format!("unix:{}", metrics_path.display()));
        }
        args.extend(opts.args.iter().cloned());
        let log = File::create(dir.join("daemon.log")).expect("create daemon log");
        // Cross-checking the harness itself: VUGPU_TEST_REFERENCE_DAEMON names
        // another backend that takes only --socket-path (QEMU's
        // /usr/lib/qemu/vhost-user-gpu). Tests that need our options or the
        // metrics endpoint fail against it by design.
        let (bin, args) = match std::env::var("VUGPU_TEST_REFERENCE_DAEMON") {
            Ok(bin) => (bin, args[..2].to_vec()),
            Err(_) => (env!("CARGO_BIN_EXE_vhost-user-gpu").to_owned(), args),
        };
        let mut command = Command::new(bin);
        let mut inherited_pipe = None;
        let mut connected = None;
        if opts.inherit_fd {
            let (ours, theirs) = UnixStream::pair().expect("vhost-user socketpair");
            let mut pipe = [0; 2];
            // SAFETY: `pipe` is a valid array of two ints for pipe2 to fill.
            let rc = unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) };
            assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
            // SAFETY: pipe2 returned two fresh descriptors we own.
            let (read_end, write_end) =
                unsafe { (File::from_raw_fd(pipe[0]), File::from_raw_fd(pipe[1])) };
            let theirs_fd = theirs.as_raw_fd();
            let write_fd = write_end.as_raw_fd();
            // SAFETY: the closure only calls dup2, which is async-signal-safe;
            // both source descriptors stay open in the parent until spawn
            // returns. dup2 clears FD_CLOEXEC on the new numbers.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                    if libc::dup2(theirs_fd, 3) < 0 || libc::dup2(write_fd, INHERITED_FD) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            inherited_pipe = Some((read_end, write_end, theirs));
            connected = Some(ours);
        }
        let listener = opts
            .inherit_listener
            .then(|| std::os::unix::net::UnixListener::bind(&socket_path).expect("bind listener"));
        if let Some(listener) = &listener {
            let fd = listener.as_raw_fd();
            // SAFETY: dup2 only, async-signal-safe; `listener` outlives spawn.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                    if libc::dup2(fd, 3) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = command
            .args(&args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "debug".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn vhost-user-gpu");
        // The child has its copies; keep only the pipe's read end.
        let inherited_pipe = inherited_pipe.map(|(read_end, _write_end, _theirs)| read_end);
        drop(listener);

        let mut regions = vec![Region {
            gpa: 0,
            size: MEM_SIZE,
            file: memfd("vugpu-test-ram", MEM_SIZE),
        }];
        if opts.high_region {
            regions.push(Region {
                gpa: HIGH_BASE,
                size: HIGH_SIZE,
                file: memfd("vugpu-test-high", HIGH_SIZE),
            });
        }
        let mem = build_memory(&regions);
        let mut vmm = TestVmm {
            child: Some(child),
            dir,
            socket_path,
            metrics_path,
            frontend: None,
            raw: None,
            mem,
            regions,
            rings: [Ring::new(RING_BASES[0]), Ring::new(RING_BASES[1])],
            display: None,
            features: 0,
            protocol_features: VhostUserProtocolFeatures::empty(),
            opts: opts.clone(),
            inherited_pipe,
        };
        let stream = match connected {
            Some(stream) => stream,
            None => vmm.wait_for_socket(),
        };
        vmm.connect_and_set_up(stream);
        vmm
    }

    /// Closes the vhost-user connection (and the display socket) without
    /// waiting for anything.
    pub fn disconnect(&mut self) {
        self.frontend = None;
        self.raw = None;
        self.display = None;
    }

    /// Closes the vhost-user connection and connects again (socket path
    /// daemons only), setting up a new device like `start` does.
    pub fn reconnect(&mut self) {
        self.disconnect();
        let stream = self.wait_for_socket();
        self.connect_and_set_up(stream);
    }

    fn connect_and_set_up(&mut self, stream: UnixStream) {
        let opts = self.opts.clone();
        let width = arg_value(&opts.args, "--width")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1280);
        let height = arg_value(&opts.args, "--height")
            .and_then(|v| v.parse().ok())
            .unwrap_or(800);
        let vmm = self;
        // A backend that never replies must fail the test, not hang it.
        stream
            .set_read_timeout(Some(TIMEOUT))
            .expect("SO_RCVTIMEO on the vhost-user socket");
        vmm.raw = Some(stream.try_clone().expect("clone vhost-user socket"));
        vmm.frontend = Some(Frontend::from_stream(stream, 2));
        vmm.negotiate(opts.event_idx);
        if opts.display {
            let (ours, theirs) = UnixStream::pair().expect("display socketpair");
            let (w, h) = opts.display_size.unwrap_or((width, height));
            vmm.display = Some(Display::start(ours, w, h));
            vmm.send_gpu_set_socket(&theirs);
        }
        vmm.set_features_and_memory();
        vmm.setup_rings();
        vmm.sync();
    }

    fn wait_for_socket(&mut self) -> UnixStream {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Ok(s) = UnixStream::connect(&self.socket_path) {
                return s;
            }
            if let Some(status) = self.child_mut().try_wait().expect("try_wait") {
                panic!(
                    "daemon exited with {status} before listening:\n{}",
                    self.daemon_log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "daemon socket never appeared:\n{}",
                self.daemon_log_tail()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("daemon child")
    }

    /// The vhost `Frontend`.
    pub fn frontend(&mut self) -> &mut Frontend {
        self.frontend.as_mut().expect("frontend connected")
    }

    /// Everything the daemon logged so far.
    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// The last 60 lines of the daemon's log, for failure messages.
    pub fn daemon_log_tail(&self) -> String {
        let log = self.daemon_log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    fn negotiate(&mut self, event_idx: bool) {
        let f = self.frontend();
        f.set_owner().expect("SET_OWNER");
        let offered = f.get_features().expect("GET_FEATURES");
        assert!(
            offered & VHOST_USER_F_PROTOCOL_FEATURES != 0,
            "daemon does not offer VHOST_USER_F_PROTOCOL_FEATURES"
        );
        let proto = f.get_protocol_features().expect("GET_PROTOCOL_FEATURES");
        let wanted = VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::RESET_DEVICE
            | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS
            | VhostUserProtocolFeatures::STATUS;
        let acked = proto & wanted;
        f.set_protocol_features(acked)
            .expect("SET_PROTOCOL_FEATURES");
        if acked.contains(VhostUserProtocolFeatures::REPLY_ACK) {
            f.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
        }
        self.protocol_features = acked;
        let mut want = VIRTIO_F_VERSION_1
            | VHOST_USER_F_PROTOCOL_FEATURES
            | VIRTIO_RING_F_INDIRECT_DESC
            | wire::VIRTIO_GPU_F_EDID
            | wire::VIRTIO_GPU_F_RESOURCE_UUID
            | wire::VIRTIO_GPU_F_RESOURCE_BLOB;
        if event_idx {
            want |= VIRTIO_RING_F_EVENT_IDX;
        }
        self.features = offered & want;
    }

    fn set_features_and_memory(&mut self) {
        let features = self.features;
        self.frontend()
            .set_features(features)
            .expect("SET_FEATURES");
        self.set_mem_table();
    }

    fn region_infos(&self) -> Vec<VhostUserMemoryRegionInfo> {
        self.regions
            .iter()
            .map(|r| VhostUserMemoryRegionInfo {
                guest_phys_addr: r.gpa,
                memory_size: r.size,
                userspace_addr: r.gpa + VA_OFFSET,
                mmap_offset: 0,
                mmap_handle: r.file.as_raw_fd(),
            })
            .collect()
    }

    fn set_mem_table(&mut self) {
        let infos = self.region_infos();
        self.frontend()
            .set_mem_table(&infos)
            .expect("SET_MEM_TABLE");
    }

    fn setup_rings(&mut self) {
        for q in [CTRL_Q, CURSOR_Q] {
            self.setup_ring(q);
        }
    }

    fn setup_ring(&mut self, q: usize) {
        let base = RING_BASES[q];
        self.mem
            .write_slice(&[0u8; 0x3000], GuestAddress(base))
            .expect("clear ring");
        self.rings[q] = Ring::new(base);
        let cfg = self.rings[q].config();
        let kick = self.rings[q].kick.try_clone().expect("dup kick");
        let call = self.rings[q].call.try_clone().expect("dup call");
        let protocol = self.features & VHOST_USER_F_PROTOCOL_FEATURES != 0;
        let f = self.frontend();
        f.set_vring_num(q, QUEUE_SIZE).expect("SET_VRING_NUM");
        f.set_vring_base(q, 0).expect("SET_VRING_BASE");
        f.set_vring_addr(q, &cfg).expect("SET_VRING_ADDR");
        f.set_vring_kick(q, &kick).expect("SET_VRING_KICK");
        f.set_vring_call(q, &call).expect("SET_VRING_CALL");
        if protocol {
            f.set_vring_enable(q, true).expect("SET_VRING_ENABLE");
        }
    }

    /// A round trip on the vhost-user socket: the backend handles messages
    /// in order, so when this returns every earlier message was processed.
    pub fn sync(&mut self) {
        self.frontend().get_features().expect("GET_FEATURES (sync)");
    }

    /// Gives the daemon a fresh display socket, as QEMU does on every
    /// DRIVER_OK (after a guest reset it closes the old one first).
    pub fn replace_display(&mut self, width: u32, height: u32) {
        self.display = None;
        let (ours, theirs) = UnixStream::pair().expect("display socketpair");
        self.display = Some(Display::start(ours, width, height));
        self.send_gpu_set_socket(&theirs);
    }

    /// Sends VHOST_USER_GPU_SET_SOCKET with `peer` attached, without
    /// NEED_REPLY, then syncs.
    fn send_gpu_set_socket(&mut self, peer: &UnixStream) {
        let mut hdr = [0u8; 12];
        hdr[0..4].copy_from_slice(&VHOST_USER_GPU_SET_SOCKET.to_le_bytes());
        hdr[4..8].copy_from_slice(&1u32.to_le_bytes());
        let raw = self.raw.as_ref().expect("raw socket");
        let sent = raw
            .send_with_fds(&[&hdr[..]], &[peer.as_raw_fd()])
            .expect("send GPU_SET_SOCKET");
        assert_eq!(sent, hdr.len());
        self.sync();
    }

    /// Sends a raw vhost-user request with `payload` and `fds` attached;
    /// with `need_reply` sets NEED_REPLY. If `expect_reply`, reads the
    /// reply (bounded by the socket's read timeout) and returns its request
    /// code, flags and payload.
    pub fn raw_request(
        &mut self,
        request: u32,
        payload: &[u8],
        fds: &[std::os::fd::RawFd],
        need_reply: bool,
        expect_reply: bool,
    ) -> Option<(u32, u32, Vec<u8>)> {
        let flags: u32 = if need_reply { 0x9 } else { 0x1 };
        let mut msg = Vec::new();
        msg.extend_from_slice(&request.to_le_bytes());
        msg.extend_from_slice(&flags.to_le_bytes());
        msg.extend_from_slice(&u32::try_from(payload.len()).expect("size").to_le_bytes());
        msg.extend_from_slice(payload);
        let raw = self.raw.as_ref().expect("raw socket");
        let sent = if fds.is_empty() {
            (&*raw).write(&msg).expect("send request")
        } else {
            raw.send_with_fds(&[&msg[..]], fds).expect("send request")
        };
        assert_eq!(sent, msg.len());
        if !expect_reply {
            return None;
        }
        let mut hdr = [0u8; 12];
        (&*raw).read_exact(&mut hdr).expect("reply header");
        let size = wire::le32(&hdr, 8) as usize;
        let mut body = vec![0u8; size];
        (&*raw).read_exact(&mut body).expect("reply payload");
        Some((wire::le32(&hdr, 0), wire::le32(&hdr, 4), body))
    }

    /// Sends a request with NEED_REPLY (REPLY_ACK is negotiated) and returns
    /// the acked value: 0 accepted, anything else refused.
    pub fn acked_request(
        &mut self,
        request: u32,
        payload: &[u8],
        fds: &[std::os::fd::RawFd],
    ) -> u64 {
        let (code, flags, body) = self
            .raw_request(request, payload, fds, true, true)
            .expect("reply");
        assert_eq!(code, request, "ack for another request");
        assert_eq!(flags & 0x4, 0x4, "not a reply");
        assert_eq!(body.len(), 8, "ack payload");
        wire::le64(&body, 0)
    }

    /// Writes `data` at guest address `gpa`.
    pub fn write_guest(&self, gpa: u64, data: &[u8]) {
        self.mem
            .write_slice(data, GuestAddress(gpa))
            .expect("write guest memory");
    }

    /// Reads `len` bytes at guest address `gpa`.
    pub fn read_guest(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        self.mem
            .read_slice(&mut buf, GuestAddress(gpa))
            .expect("read guest memory");
        buf
    }

    /// Sends `req` as one readable descriptor followed by one writable
    /// descriptor of `resp_capacity` bytes, and waits for completion.
    pub fn send(&mut self, queue: usize, req: &[u8], resp_capacity: u32) -> Response {
        self.send_segments(queue, &[req], &[resp_capacity])
    }

    /// Sends a chain of readable segments then writable segments placed
    /// in the scratch areas; returns the concatenated writable bytes.
    pub fn send_segments(
        &mut self,
        queue: usize,
        readable: &[&[u8]],
        writable: &[u32],
    ) -> Response {
        let descs = self.place_segments(readable, writable);
        let used_len = self.send_descs(queue, &descs);
        self.collect_response(&descs, used_len)
    }

    /// Writes readable segments into the request area and poisons writable
    /// ones in the response area; returns their descriptors in order.
    fn place_segments(&mut self, readable: &[&[u8]], writable: &[u32]) -> Vec<Desc> {
        let mut descs = Vec::new();
        let mut at = REQ_AREA.0;
        for seg in readable {
            let len = u32::try_from(seg.len()).expect("segment length");
            assert!(at + u64::from(len) <= REQ_AREA.1, "request too large");
            self.write_guest(at, seg);
            descs.push(Desc {
                addr: at,
                len,
                write: false,
            });
            at = (at + u64::from(len) + 15) & !15;
        }
        let mut at = RESP_AREA.0;
        for &len in writable {
            assert!(at + u64::from(len) <= RESP_AREA.1, "response too large");
            // Poison so that bytes the device did not write are recognisable.
            self.write_guest(at, &vec![0xa5; len as usize]);
            descs.push(Desc {
                addr: at,
                len,
                write: true,
            });
            at = (at + u64::from(len) + 15) & !15;
        }
        descs
    }

    /// Reads back the writable buffers of a completed chain.
    fn collect_response(&self, descs: &[Desc], used_len: u32) -> Response {
        let mut bytes = Vec::new();
        for d in descs.iter().filter(|d| d.write) {
            bytes.extend(self.read_guest(d.addr, d.len as usize));
        }
        Response { used_len, bytes }
    }

    /// Queues an arbitrary chain, kicks, and waits for its used element.
    /// Returns the used length.
    pub fn send_descs(&mut self, queue: usize, descs: &[Desc]) -> u32 {
        let head = self.push_chain(queue, descs);
        self.kick(queue);
        let (id, len) = self.wait_used(queue);
        assert_eq!(id, u32::from(head), "used element for another chain");
        len
    }

    /// Writes a chain into the descriptor table and publishes it in the
    /// avail ring without kicking. Returns the head index.
    pub fn push_chain(&mut self, queue: usize, descs: &[Desc]) -> u16 {
        let raw: Vec<_> = descs
            .iter()
            .map(|d| (d.addr, d.len, if d.write { VRING_DESC_F_WRITE } else { 0 }))
            .collect();
        self.push_raw_chain(queue, &raw)
    }

    /// Writes descriptors `(addr, len, flags)` chained with NEXT (added
    /// here) and publishes the chain without kicking. Returns the head.
    pub fn push_raw_chain(&mut self, queue: usize, descs: &[(u64, u32, u16)]) -> u16 {
        assert!(!descs.is_empty() && descs.len() < usize::from(QUEUE_SIZE));
        let ring = &self.rings[queue];
        let (desc_base, avail, mut idx, avail_idx) =
            (ring.desc, ring.avail, ring.next_desc, ring.avail_idx);
        let head = idx;
        for (i, &(addr, len, flags)) in descs.iter().enumerate() {
            let next = (idx + 1) % QUEUE_SIZE;
            let mut flags = flags;
            if i + 1 < descs.len() {
                flags |= VRING_DESC_F_NEXT;
            }
            let mut raw = [0u8; 16];
            raw[0..8].copy_from_slice(&addr.to_le_bytes());
            raw[8..12].copy_from_slice(&len.to_le_bytes());
            raw[12..14].copy_from_slice(&flags.to_le_bytes());
            raw[14..16].copy_from_slice(&next.to_le_bytes());
            self.write_guest(desc_base + 16 * u64::from(idx), &raw);
            idx = next;
        }
        let slot = u64::from(avail_idx % QUEUE_SIZE);
        self.write_guest(avail + 4 + 2 * slot, &head.to_le_bytes());
        std::sync::atomic::fence(Ordering::SeqCst);
        let new_idx = avail_idx.wrapping_add(1);
        self.write_guest(avail + 2, &new_idx.to_le_bytes());
        std::sync::atomic::fence(Ordering::SeqCst);
        let ring = &mut self.rings[queue];
        ring.next_desc = idx;
        ring.avail_idx = new_idx;
        head
    }

    /// Like [`Self::send_segments`] but the chain is one
    /// VRING_DESC_F_INDIRECT descriptor pointing at a table holding the
    /// segments, as Linux sends requests when INDIRECT_DESC is negotiated.
    pub fn send_indirect(
        &mut self,
        queue: usize,
        readable: &[&[u8]],
        writable: &[u32],
    ) -> Response {
        let descs = self.place_segments(readable, writable);
        let mut table = Vec::with_capacity(16 * descs.len());
        for (i, d) in descs.iter().enumerate() {
            let mut flags = if d.write { VRING_DESC_F_WRITE } else { 0 };
            let next = if i + 1 < descs.len() {
                flags |= VRING_DESC_F_NEXT;
                u16::try_from(i + 1).expect("small table")
            } else {
                0
            };
            table.extend_from_slice(&d.addr.to_le_bytes());
            table.extend_from_slice(&d.len.to_le_bytes());
            table.extend_from_slice(&flags.to_le_bytes());
            table.extend_from_slice(&next.to_le_bytes());
        }
        assert!(table.len() <= PAGE as usize, "indirect table too large");
        self.write_guest(INDIRECT_TABLE, &table);
        let head = self.push_raw_chain(
            queue,
            &[(INDIRECT_TABLE, table.len() as u32, VRING_DESC_F_INDIRECT)],
        );
        self.kick(queue);
        let (id, used_len) = self.wait_used(queue);
        assert_eq!(id, u32::from(head), "used element for another chain");
        self.collect_response(&descs, used_len)
    }

    /// Publishes an avail index `delta` past the real one without adding
    /// chains (a buggy or hostile driver). The ring is unusable afterwards.
    pub fn corrupt_avail_idx(&mut self, queue: usize, delta: u16) {
        let ring = &mut self.rings[queue];
        ring.avail_idx = ring.avail_idx.wrapping_add(delta);
        let (avail, idx) = (ring.avail, ring.avail_idx);
        self.write_guest(avail + 2, &idx.to_le_bytes());
    }

    /// SET_VRING_ENABLE for `queue`, then a sync.
    pub fn set_ring_enabled(&mut self, queue: usize, enabled: bool) {
        self.frontend()
            .set_vring_enable(queue, enabled)
            .expect("SET_VRING_ENABLE");
        self.sync();
    }

    /// The used ring's index of `queue` as the device last published it.
    pub fn used_idx(&self, queue: usize) -> u16 {
        let mut idx = [0u8; 2];
        self.mem
            .read_slice(&mut idx, GuestAddress(self.rings[queue].used + 2))
            .expect("read used idx");
        u16::from_le_bytes(idx)
    }

    /// Reads (and resets) the number of used-ring notifications the
    /// device sent on `queue` since the last read.
    pub fn take_calls(&self, queue: usize) -> u64 {
        self.rings[queue].call.read().unwrap_or(0)
    }

    /// Kicks `queue`.
    pub fn kick(&self, queue: usize) {
        self.rings[queue].kick.write(1).expect("kick");
    }

    /// Waits for the next used element of `queue`; returns (id, len).
    pub fn wait_used(&mut self, queue: usize) -> (u32, u32) {
        self.try_wait_used(queue, TIMEOUT).unwrap_or_else(|| {
            panic!(
                "no used element on queue {queue} within {TIMEOUT:?}; daemon log:\n{}",
                self.daemon_log_tail()
            )
        })
    }

    /// Like [`Self::wait_used`] but returns `None` after `timeout`.
    pub fn try_wait_used(&mut self, queue: usize, timeout: Duration) -> Option<(u32, u32)> {
        let deadline = Instant::now() + timeout;
        let used = self.rings[queue].used;
        let last = self.rings[queue].last_used;
        loop {
            let mut idx = [0u8; 2];
            self.mem
                .read_slice(&mut idx, GuestAddress(used + 2))
                .expect("read used idx");
            if u16::from_le_bytes(idx) != last {
                std::sync::atomic::fence(Ordering::SeqCst);
                let slot = u64::from(last % QUEUE_SIZE);
                let elem = self.read_guest(used + 4 + 8 * slot, 8);
                let next = last.wrapping_add(1);
                self.rings[queue].last_used = next;
                // EVENT_IDX: ask for a notification on the next completion.
                let avail = self.rings[queue].avail;
                self.write_guest(avail + 4 + 2 * u64::from(QUEUE_SIZE), &next.to_le_bytes());
                return Some((wire::le32(&elem, 0), wire::le32(&elem, 4)));
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let wait = (deadline - now).min(Duration::from_millis(50));
            self.poll_call(queue, wait);
        }
    }

    fn poll_call(&self, queue: usize, wait: Duration) {
        let call = &self.rings[queue].call;
        let mut pfd = libc::pollfd {
            fd: call.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `pfd` is a valid pollfd for the duration of the call and the
        // count (1) matches; poll does not retain the pointer.
        unsafe { libc::poll(&mut pfd, 1, ms) };
        let _ = call.read();
    }

    /// Sends `req` on the control queue with a generous response buffer.
    pub fn ctrl(&mut self, req: &[u8]) -> Response {
        self.send(CTRL_Q, req, 4096)
    }

    /// Sends `req` on the control queue and returns the response type.
    pub fn ctrl_type(&mut self, req: &[u8]) -> u32 {
        self.ctrl(req).type_()
    }

    /// Sends `req` on the control queue and asserts it returned OK_NODATA.
    pub fn ok(&mut self, req: &[u8]) {
        let resp = self.ctrl(req);
        assert_eq!(
            resp.type_(),
            wire::RESP_OK_NODATA,
            "request type {:#x} failed with {:#x}",
            wire::le32(req, 0),
            resp.type_()
        );
    }

    /// Creates a BGRA 2D resource and attaches `entries` as its backing.
    pub fn create_backed_2d(&mut self, id: u32, w: u32, h: u32, entries: &[wire::MemEntry]) {
        self.ok(&wire::resource_create_2d(
            id,
            wire::FORMAT_B8G8R8A8_UNORM,
            w,
            h,
        ));
        self.ok(&wire::attach_backing(id, entries));
    }

    /// Returns an index into the display log such that every display
    /// message caused by commands completed so far lies before it.
    ///
    /// The display thread records asynchronously, so the log length alone
    /// is not enough: this sends a MOVE_CURSOR with a unique position and
    /// waits for its CURSOR_POS, which the daemon writes on the same stream
    /// after everything it wrote for earlier completed commands.
    pub fn display_mark(&mut self) -> usize {
        let n = MARK.fetch_add(1, Ordering::Relaxed);
        let x = MARK_X + n;
        // Any non-zero resource id: MOVE_CURSOR only moves the image.
        self.send_segments(CURSOR_Q, &[&wire::move_cursor(0, x, MARK_X, 1)], &[]);
        let display = self.display.as_ref().expect("display socket");
        let (idx, _) = display.wait_for(
            0,
            |m| matches!(m, DisplayMsg::CursorPos { x: mx, y, .. } if *mx == x && *y == MARK_X),
        );
        idx + 1
    }

    /// Asserts the daemon still answers GET_DISPLAY_INFO.
    pub fn assert_alive(&mut self) {
        let resp = self.send(
            CTRL_Q,
            &wire::get_display_info(),
            wire::RESP_DISPLAY_INFO_SIZE as u32,
        );
        assert_eq!(
            resp.type_(),
            wire::RESP_OK_DISPLAY_INFO,
            "daemon stopped serving"
        );
    }

    /// Scrapes GET /metrics over the metrics unix socket; returns the body.
    pub fn metrics(&self) -> String {
        let s = UnixStream::connect(&self.metrics_path).expect("connect metrics socket");
        s.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
        http_get(s)
    }

    /// Value of one sample, named with its labels exactly as exposed
    /// (`vugpu_commands_total{cmd="get_edid"}`); 0 if absent.
    pub fn metric(&self, name: &str) -> f64 {
        metric_value(&self.metrics(), name).unwrap_or(0.0)
    }

    /// Replaces region 0 with a fresh memfd holding a copy of the current
    /// content (and adds the high region if `add_high`), then sends
    /// SET_MEM_TABLE and syncs. Returns the old mapping of region 0, which
    /// the test still holds and may scribble on.
    pub fn remap(&mut self, add_high: bool) -> GuestMemoryMmap {
        self.remap_with(add_high, false)
    }

    /// Like [`Self::remap`], and if `drop_high` the high region is left out
    /// of the new table (as when a VMM unplugs memory).
    pub fn remap_with(&mut self, add_high: bool, drop_high: bool) -> GuestMemoryMmap {
        let old = self.mem.clone();
        let new_file = memfd("vugpu-test-ram2", MEM_SIZE);
        let mut fresh = vec![Region {
            gpa: 0,
            size: MEM_SIZE,
            file: new_file,
        }];
        for r in self.regions.iter().skip(1).filter(|_| !drop_high) {
            fresh.push(Region {
                gpa: r.gpa,
                size: r.size,
                file: r.file.try_clone().expect("dup memfd"),
            });
        }
        if add_high && fresh.len() == 1 {
            fresh.push(Region {
                gpa: HIGH_BASE,
                size: HIGH_SIZE,
                file: memfd("vugpu-test-high", HIGH_SIZE),
            });
        }
        let new_mem = build_memory(&fresh);
        let mut chunk = vec![0u8; 1 << 20];
        let mut at = 0;
        while at < MEM_SIZE {
            old.read_slice(&mut chunk, GuestAddress(at))
                .expect("copy old ram");
            new_mem
                .write_slice(&chunk, GuestAddress(at))
                .expect("copy new ram");
            at += chunk.len() as u64;
        }
        self.regions = fresh;
        self.mem = new_mem;
        self.set_mem_table();
        self.sync();
        old
    }

    /// Resets the device the way a VMM does on guest reset: RESET_DEVICE if
    /// negotiated, else stopping both rings with GET_VRING_BASE; then sets
    /// features, memory and rings up again.
    pub fn reset(&mut self) {
        if self
            .protocol_features
            .contains(VhostUserProtocolFeatures::RESET_DEVICE)
        {
            self.frontend().reset_device().expect("RESET_DEVICE");
        } else {
            for q in [CTRL_Q, CURSOR_Q] {
                self.frontend().get_vring_base(q).expect("GET_VRING_BASE");
            }
        }
        self.set_features_and_memory();
        self.setup_rings();
        self.sync();
    }

    /// Stops both rings with GET_VRING_BASE and starts them again where
    /// they left off, as QEMU's vhost_dev_stop/vhost_dev_start do (VM
    /// pause, migration, or a guest reset without RESET_DEVICE).
    pub fn stop_and_restart_rings(&mut self) {
        let mut bases = [0u16; 2];
        for q in [CTRL_Q, CURSOR_Q] {
            let base = self.frontend().get_vring_base(q).expect("GET_VRING_BASE");
            bases[q] = u16::try_from(base).expect("vring base fits u16");
            assert_eq!(
                bases[q], self.rings[q].avail_idx,
                "backend consumed every chain"
            );
        }
        self.set_features_and_memory();
        for q in [CTRL_Q, CURSOR_Q] {
            let cfg = self.rings[q].config();
            let kick = self.rings[q].kick.try_clone().expect("dup kick");
            let call = self.rings[q].call.try_clone().expect("dup call");
            let f = self.frontend();
            f.set_vring_num(q, QUEUE_SIZE).expect("SET_VRING_NUM");
            f.set_vring_base(q, bases[q]).expect("SET_VRING_BASE");
            f.set_vring_addr(q, &cfg).expect("SET_VRING_ADDR");
            f.set_vring_kick(q, &kick).expect("SET_VRING_KICK");
            f.set_vring_call(q, &call).expect("SET_VRING_CALL");
            f.set_vring_enable(q, true).expect("SET_VRING_ENABLE");
        }
        self.sync();
    }

    /// Closes the vhost-user connection (as a VMM that quits) and waits,
    /// bounded, for the daemon to exit.
    pub fn disconnect_and_wait(&mut self) -> ExitStatus {
        self.frontend = None;
        self.raw = None;
        self.wait_exit()
    }

    /// Sends SIGTERM to the daemon (by its pid) and waits for it to exit.
    pub fn terminate_and_wait(&mut self) -> ExitStatus {
        self.signal_and_wait(libc::SIGTERM)
    }

    /// Sends `signal` to the daemon (by its pid) and waits for it to exit.
    pub fn signal_and_wait(&mut self, signal: libc::c_int) -> ExitStatus {
        let pid = libc::pid_t::try_from(self.child_mut().id()).expect("pid fits pid_t");
        // SAFETY: kill has no memory-safety preconditions; `pid` is our own
        // child, which has not been reaped yet, so the pid is not reused.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
        self.wait_exit()
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child_mut().try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not exit within {TIMEOUT:?}:\n{}",
                self.daemon_log_tail()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Reads the 16-byte `struct virtio_gpu_config` with GET_CONFIG.
    pub fn read_config(&mut self) -> Vec<u8> {
        assert!(
            self.protocol_features
                .contains(VhostUserProtocolFeatures::CONFIG),
            "daemon does not offer VHOST_USER_PROTOCOL_F_CONFIG"
        );
        let (_, payload) = self
            .frontend()
            .get_config(0, 16, VhostUserConfigFlags::empty(), &[0u8; 16])
            .expect("GET_CONFIG");
        payload
    }

    /// Waits (bounded) until the daemon's log contains `needle`.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let log = self.daemon_log();
            if let Some(line) = log.lines().find(|l| l.contains(needle)) {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} never logged:\n{}",
                self.daemon_log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) until some thread of the daemon sleeps in the kernel
    /// function `wchan` (from /proc/PID/task/TID/wchan); false on timeout.
    pub fn wait_daemon_blocked_in(&mut self, wchan: &str) -> bool {
        let pid = self.child_mut().id();
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("daemon tasks");
            for task in tasks.flatten() {
                let w = std::fs::read_to_string(task.path().join("wchan")).unwrap_or_default();
                if w.trim() == wchan {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Sets SO_RCVTIMEO on the vhost-user connection (shared with the
    /// `Frontend`), so a backend that never replies fails the test instead
    /// of hanging it.
    pub fn set_reply_timeout(&self, timeout: Duration) {
        self.raw
            .as_ref()
            .expect("raw socket")
            .set_read_timeout(Some(timeout))
            .expect("SO_RCVTIMEO");
    }

    /// SET_CONFIG of `data` at `offset` of the device config space, with
    /// flags 0 (VHOST_SET_CONFIG_TYPE_FRONTEND) as QEMU sends it.
    pub fn write_config(&mut self, offset: u32, data: &[u8]) -> vhost::Result<()> {
        self.frontend()
            .set_config(offset, VhostUserConfigFlags::empty(), data)
    }

    /// The daemon's process id.
    pub fn pid(&mut self) -> u32 {
        self.child_mut().id()
    }

    /// Path of the daemon's vhost-user socket.
    pub fn socket(&self) -> &Path {
        &self.socket_path
    }
}

impl Drop for TestVmm {
    fn drop(&mut self) {
        self.frontend = None;
        self.raw = None;
        if let Some(mut child) = self.child.take() {
            if child.try_wait().ok().flatten().is_none() {
                // A --socket-path daemon keeps serving after a disconnect.
                if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                    // SAFETY: kill has no memory-safety preconditions; the
                    // child is not reaped yet, so its pid is not reused.
                    unsafe { libc::kill(pid, libc::SIGTERM) };
                }
            }
            let deadline = Instant::now() + Duration::from_secs(2);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if child.try_wait().ok().flatten().is_none() {
                // Child::kill signals this child's pid only.
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.display = None;
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("daemon log kept in {}", self.dir.display());
        }
    }
}

/// GET /metrics over a TCP address; returns the body.
pub fn http_get_tcp(addr: &str) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match std::net::TcpStream::connect(addr) {
            Ok(s) => {
                s.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
                return http_get(s);
            }
            Err(e) => assert!(Instant::now() < deadline, "connect {addr}: {e}"),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends GET /metrics on a connected stream and returns the body of a 200.
fn http_get<S: Read + Write>(mut s: S) -> String {
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("send metrics request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read metrics response");
    let text = String::from_utf8(raw).expect("metrics are UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
    assert!(head.starts_with("HTTP/1."), "not an HTTP response: {head}");
    assert!(head.contains(" 200"), "metrics status: {head}");
    body.to_owned()
}

/// Finds `name` (with labels) in Prometheus text and parses its value.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (key, value) = l.rsplit_once(' ')?;
        (key.trim() == name)
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// `len` bytes of a deterministic pattern seeded by `seed`.
pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u8)
                .wrapping_mul(31)
                .wrapping_add(seed)
                .wrapping_add((i >> 8) as u8)
        })
        .collect()
}

/// One backing entry per page starting at `gpa`, `pages` pages in total.
pub fn page_entries(gpa: u64, pages: u64) -> Vec<wire::MemEntry> {
    (0..pages)
        .map(|i| wire::MemEntry {
            addr: gpa + i * PAGE,
            length: PAGE as u32,
        })
        .collect()
}

/// A single backing entry.
pub fn entry(addr: u64, length: u32) -> wire::MemEntry {
    wire::MemEntry { addr, length }
}
