//! The vhost-user request gate: every message from the frontend is read and
//! checked here before vhost-user-backend sees it.
//!
//! # Why a relay
//!
//! vhost-user-backend 0.24 runs the request loop itself
//! (`VhostUserDaemon::start_daemon`) and ends it on the first error any
//! handler returns, even after it sent a failure ack: a second SET_OWNER, a
//! ring size of 0, a queue index out of range or an unknown request code all
//! drop the connection, and the library offers no way to run the loop over
//! its (private) handler ourselves. So the daemon drives the frontend side of
//! the loop here instead: a [`Relay`] reads each message from the frontend
//! (header, payload, file descriptors), checks it with a [`Gate`] that knows
//! every condition under which the library would give up, and either forwards
//! it unchanged over a private socket pair to the library, or refuses it:
//! its descriptors are closed, and the frontend gets a non-zero REPLY_ACK
//! (when negotiated and asked for) or, for requests that have a reply of
//! their own, a well-formed reply that says "nothing" (GET_CONFIG with size
//! 0, GET_VRING_BASE with 0). The connection then goes on in the state it
//! had before the message.
//!
//! Replies from the library travel back unchanged. Both directions write
//! whole messages, and writes to the frontend are serialised by a mutex, so
//! a refusal never interleaves with a reply.
//!
//! The same mechanism serves a connection that does not come from a
//! listening socket the library could accept from (`--fd` with a connected
//! socket pair): the library always accepts the private end.
//!
//! GPU_SET_SOCKET is not forwarded: its descriptor goes straight to the
//! device ([`DisplaySink`]), which speaks the display protocol itself with
//! deadlines (see [`crate::display`]); the relay acks it.
//!
//! # What the gate checks
//!
//! Header: version 1, no reply flag, no reserved flag, payload at most 4 KiB
//! (a longer one is read and discarded). Descriptors only on requests that
//! carry them, in the exact number. Requests: only the ones this backend
//! serves (the protocol features it offers); exact payload sizes; feature
//! bits that were offered; queue indices below the number of queues; ring
//! sizes that are a power of two between 1 and the maximum; ring addresses
//! whose whole ring lies inside one mapped region and is aligned; memory
//! tables with 1..=8 regions, as many descriptors as regions, no region of
//! size 0, none wrapping, none overlapping another (guest-physical or
//! frontend-virtual), and none extending beyond the end of its file
//! (`fstat`): mapping such a region would SIGBUS on the first access.

use std::io::{self, IoSlice};
use std::mem;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use log::{debug, warn};
use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vugpu_metrics::Metrics;

use crate::guest_warn;
use crate::ratelimit::LogLimiter;

/// Size of a vhost-user message header.
pub const HDR_LEN: usize = 12;
/// Largest payload the library accepts (`MAX_MSG_SIZE`).
pub const MAX_PAYLOAD: usize = 0x1000;
/// Most descriptors a message may carry that the relay receives.
const MAX_FDS: usize = 32;
/// Most regions in one SET_MEM_TABLE (`VHOST_MEMORY_BASELINE_NREGIONS`).
pub const MAX_REGIONS: usize = 8;
/// Frontend messages refused per second that are logged.
const REFUSAL_LOG_BURST: u32 = 20;

/// Header flag: protocol version 1.
const FLAG_VERSION_1: u32 = 0x1;
/// Header flag: this is a reply.
const FLAG_REPLY: u32 = 0x4;
/// Header flag: the frontend wants a REPLY_ACK.
const FLAG_NEED_REPLY: u32 = 0x8;
/// Header flag bits the protocol defines.
const FLAG_KNOWN: u32 = 0xf;

/// Frontend request codes (vhost-user specification).
#[allow(missing_docs)]
pub mod req {
    pub const GET_FEATURES: u32 = 1;
    pub const SET_FEATURES: u32 = 2;
    pub const SET_OWNER: u32 = 3;
    pub const RESET_OWNER: u32 = 4;
    pub const SET_MEM_TABLE: u32 = 5;
    pub const SET_VRING_NUM: u32 = 8;
    pub const SET_VRING_ADDR: u32 = 9;
    pub const SET_VRING_BASE: u32 = 10;
    pub const GET_VRING_BASE: u32 = 11;
    pub const SET_VRING_KICK: u32 = 12;
    pub const SET_VRING_CALL: u32 = 13;
    pub const SET_VRING_ERR: u32 = 14;
    pub const GET_PROTOCOL_FEATURES: u32 = 15;
    pub const SET_PROTOCOL_FEATURES: u32 = 16;
    pub const GET_QUEUE_NUM: u32 = 17;
    pub const SET_VRING_ENABLE: u32 = 18;
    pub const GET_CONFIG: u32 = 24;
    pub const SET_CONFIG: u32 = 25;
    pub const GPU_SET_SOCKET: u32 = 33;
    pub const RESET_DEVICE: u32 = 34;
    pub const GET_MAX_MEM_SLOTS: u32 = 36;
    pub const SET_DEVICE_STATE_FD: u32 = 42;
    pub const CHECK_DEVICE_STATE: u32 = 43;
}

/// `VHOST_USER_F_PROTOCOL_FEATURES`, virtio feature bit 30.
const PROTOCOL_FEATURES_BIT: u64 = 1 << 30;
/// Largest `VhostUserConfig` offset + size the library accepts.
const CONFIG_SPACE_LIMIT: u64 = 0x1000;
/// Size of a `VhostUserConfig` header (offset, size, flags).
const CONFIG_HDR_LEN: usize = 12;
/// Size of a `VhostUserMemoryRegion`.
const REGION_LEN: usize = 32;

/// What the backend offers, which bounds what the frontend may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateLimits {
    /// Virtio features offered (GET_FEATURES).
    pub virtio_features: u64,
    /// Protocol features offered (GET_PROTOCOL_FEATURES, REPLY_ACK included).
    pub protocol_features: u64,
    /// Number of queues.
    pub num_queues: u32,
    /// Largest ring size.
    pub max_queue_size: u32,
}

/// One message as read from a socket.
#[derive(Debug)]
pub struct Message {
    /// Request code.
    pub request: u32,
    /// Header flags.
    pub flags: u32,
    /// Payload (at most [`MAX_PAYLOAD`] bytes).
    pub payload: Vec<u8>,
    /// Descriptors received with it.
    pub fds: Vec<OwnedFd>,
    /// Why the message cannot be forwarded whatever its content (too long,
    /// descriptors truncated).
    pub broken: Option<&'static str>,
}

/// A mapped region as the gate tracks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Region {
    guest_addr: u64,
    user_addr: u64,
    size: u64,
}

/// The gate's decision on one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Pass it to the library.
    Forward,
    /// Refuse it, for this reason.
    Refuse(&'static str),
}

/// Model of the library's connection state, enough to predict every request
/// it would fail on.
#[derive(Debug, Clone)]
pub struct Gate {
    limits: GateLimits,
    owned: bool,
    acked_virtio: u64,
    acked_protocol: u64,
    regions: Vec<Region>,
    ring_sizes: Vec<u32>,
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

fn u64_at(buf: &[u8], at: usize) -> Option<u64> {
    let bytes = buf.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// Size of the file behind `fd` (`fstat`).
fn file_size(fd: &OwnedFd) -> io::Result<u64> {
    // SAFETY: `stat` is plain data, fully written by a successful fstat.
    let mut st: libc::stat = unsafe { mem::zeroed() };
    // SAFETY: `fd` is an open descriptor we own; `st` is a valid out pointer.
    let rc = unsafe { libc::fstat(fd.as_raw_fd(), &mut st) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    u64::try_from(st.st_size).map_err(|_| io::Error::other("negative file size"))
}

/// True if `[a, a + alen)` and `[b, b + blen)` overlap (no wrap: checked
/// before).
fn overlaps(a: u64, alen: u64, b: u64, blen: u64) -> bool {
    a < b.saturating_add(blen) && b < a.saturating_add(alen)
}

impl Gate {
    /// A gate for a fresh connection.
    pub fn new(limits: GateLimits) -> Self {
        Self {
            limits,
            owned: false,
            acked_virtio: 0,
            acked_protocol: 0,
            regions: Vec::new(),
            ring_sizes: vec![limits.max_queue_size; limits.num_queues as usize],
        }
    }

    /// True if REPLY_ACK was negotiated.
    pub fn reply_ack(&self) -> bool {
        self.acked_protocol & VhostUserProtocolFeatures::REPLY_ACK.bits() != 0
    }

    fn proto(&self, feature: VhostUserProtocolFeatures) -> Result<(), &'static str> {
        if self.acked_protocol & feature.bits() != 0 {
            Ok(())
        } else {
            Err("request needs a protocol feature that was not negotiated")
        }
    }

    fn queue(&self, index: u64) -> Result<usize, &'static str> {
        if index < u64::from(self.limits.num_queues) {
            usize::try_from(index).map_err(|_| "queue index out of range")
        } else {
            Err("queue index out of range")
        }
    }

    /// Checks `msg` and, if it is forwarded, updates the model.
    pub fn check(&mut self, msg: &Message) -> Verdict {
        match self.check_inner(msg) {
            Ok(()) => Verdict::Forward,
            Err(reason) => Verdict::Refuse(reason),
        }
    }

    fn check_inner(&mut self, msg: &Message) -> Result<(), &'static str> {
        if let Some(reason) = msg.broken {
            return Err(reason);
        }
        if msg.flags & !FLAG_KNOWN != 0 || msg.flags & 0x3 != FLAG_VERSION_1 {
            return Err("bad header flags or version");
        }
        if msg.flags & FLAG_REPLY != 0 {
            return Err("a reply sent as a request");
        }
        let p = msg.payload.as_slice();
        let nfds = msg.fds.len();
        let exact = |len: usize| {
            if p.len() == len {
                Ok(())
            } else {
                Err("payload size does not match the request")
            }
        };
        let no_fds = || {
            if nfds == 0 {
                Ok(())
            } else {
                Err("descriptors attached to a request that takes none")
            }
        };
        match msg.request {
            req::GET_FEATURES | req::GET_PROTOCOL_FEATURES => {
                exact(0)?;
                no_fds()
            }
            req::SET_OWNER => {
                exact(0)?;
                no_fds()?;
                if self.owned {
                    return Err("SET_OWNER on an owned connection");
                }
                self.owned = true;
                Ok(())
            }
            req::RESET_OWNER => {
                exact(0)?;
                no_fds()?;
                // Only ownership: vhost's request handler keeps the acked
                // feature words it checks until the next SET_*FEATURES.
                self.owned = false;
                Ok(())
            }
            req::SET_FEATURES => {
                exact(8)?;
                no_fds()?;
                let features = u64_at(p, 0).ok_or("short payload")?;
                if features & !self.limits.virtio_features != 0 {
                    return Err("SET_FEATURES with features that were not offered");
                }
                self.acked_virtio = features;
                Ok(())
            }
            req::SET_PROTOCOL_FEATURES => {
                exact(8)?;
                no_fds()?;
                let features = u64_at(p, 0).ok_or("short payload")?;
                if features & !self.limits.protocol_features != 0 {
                    return Err("SET_PROTOCOL_FEATURES with features that were not offered");
                }
                self.acked_protocol = features;
                Ok(())
            }
            req::GET_QUEUE_NUM => {
                self.proto(VhostUserProtocolFeatures::MQ)?;
                exact(0)?;
                no_fds()
            }
            req::RESET_DEVICE => {
                self.proto(VhostUserProtocolFeatures::RESET_DEVICE)?;
                exact(0)?;
                no_fds()
            }
            req::SET_MEM_TABLE => self.check_mem_table(p, &msg.fds),
            req::SET_VRING_NUM => {
                exact(8)?;
                no_fds()?;
                let index = self.queue(u64::from(u32_at(p, 0).ok_or("short payload")?))?;
                let num = u32_at(p, 4).ok_or("short payload")?;
                if num == 0 || !num.is_power_of_two() || num > self.limits.max_queue_size {
                    return Err("ring size is 0, not a power of two, or above the maximum");
                }
                if let Some(size) = self.ring_sizes.get_mut(index) {
                    *size = num;
                }
                Ok(())
            }
            req::SET_VRING_ADDR => {
                exact(40)?;
                no_fds()?;
                self.check_vring_addr(p)
            }
            req::SET_VRING_BASE | req::GET_VRING_BASE => {
                exact(8)?;
                no_fds()?;
                self.queue(u64::from(u32_at(p, 0).ok_or("short payload")?))?;
                Ok(())
            }
            req::SET_VRING_KICK | req::SET_VRING_CALL | req::SET_VRING_ERR => {
                exact(8)?;
                let value = u64_at(p, 0).ok_or("short payload")?;
                if value & !0x1ff != 0 {
                    return Err("vring descriptor request with unknown bits");
                }
                self.queue(value & 0xff)?;
                let expected = if value & 0x100 != 0 { 0 } else { 1 };
                if nfds != expected {
                    return Err("vring descriptor request with the wrong number of descriptors");
                }
                Ok(())
            }
            req::SET_VRING_ENABLE => {
                exact(8)?;
                no_fds()?;
                if self.acked_virtio & PROTOCOL_FEATURES_BIT == 0 {
                    return Err("SET_VRING_ENABLE without VHOST_USER_F_PROTOCOL_FEATURES");
                }
                self.queue(u64::from(u32_at(p, 0).ok_or("short payload")?))?;
                match u32_at(p, 4) {
                    Some(0 | 1) => Ok(()),
                    _ => Err("SET_VRING_ENABLE with a value other than 0 or 1"),
                }
            }
            req::GET_CONFIG | req::SET_CONFIG => {
                self.proto(VhostUserProtocolFeatures::CONFIG)?;
                no_fds()?;
                let offset = u32_at(p, 0).ok_or("short payload")?;
                let size = u32_at(p, 4).ok_or("short payload")?;
                let flags = u32_at(p, 8).ok_or("short payload")?;
                let end = u64::from(offset) + u64::from(size);
                if size == 0 || end > CONFIG_SPACE_LIMIT || flags & !0x3 != 0 {
                    return Err("config access outside the config space");
                }
                exact(CONFIG_HDR_LEN + size as usize)
            }
            req::GPU_SET_SOCKET => {
                if nfds == 1 {
                    Ok(())
                } else {
                    Err("GPU_SET_SOCKET needs exactly one descriptor")
                }
            }
            _ => Err("request not supported by this backend"),
        }
    }

    fn check_mem_table(&mut self, p: &[u8], fds: &[OwnedFd]) -> Result<(), &'static str> {
        let n = u32_at(p, 0).ok_or("short payload")? as usize;
        if n == 0 || n > MAX_REGIONS {
            return Err("memory table with no regions or more than 8");
        }
        if p.len() != 8 + n * REGION_LEN {
            return Err("memory table region count does not match the payload");
        }
        if fds.len() != n {
            return Err("memory table region count does not match the descriptors");
        }
        let mut regions = Vec::with_capacity(n);
        for (i, fd) in fds.iter().enumerate() {
            let at = 8 + i * REGION_LEN;
            let region = (|| {
                Some((
                    u64_at(p, at)?,
                    u64_at(p, at + 8)?,
                    u64_at(p, at + 16)?,
                    u64_at(p, at + 24)?,
                ))
            })();
            let (guest_addr, size, user_addr, mmap_offset) = region.ok_or("short payload")?;
            let region = Self::check_region(guest_addr, size, user_addr, mmap_offset, fd)?;
            if regions.iter().any(|r: &Region| {
                overlaps(r.guest_addr, r.size, region.guest_addr, region.size)
                    || overlaps(r.user_addr, r.size, region.user_addr, region.size)
            }) {
                return Err("memory regions overlap");
            }
            regions.push(region);
        }
        self.regions = regions;
        Ok(())
    }

    fn check_region(
        guest_addr: u64,
        size: u64,
        user_addr: u64,
        mmap_offset: u64,
        fd: &OwnedFd,
    ) -> Result<Region, &'static str> {
        if size == 0 {
            return Err("memory region of size 0");
        }
        if guest_addr.checked_add(size).is_none()
            || user_addr.checked_add(size).is_none()
            || mmap_offset.checked_add(size).is_none()
        {
            return Err("memory region wraps around");
        }
        let file = file_size(fd).map_err(|_| "memory region descriptor cannot be examined")?;
        if mmap_offset + size > file {
            return Err("memory region extends beyond the end of its file");
        }
        Ok(Region {
            guest_addr,
            user_addr,
            size,
        })
    }

    fn check_vring_addr(&self, p: &[u8]) -> Result<(), &'static str> {
        let index = self.queue(u64::from(u32_at(p, 0).ok_or("short payload")?))?;
        let flags = u32_at(p, 4).ok_or("short payload")?;
        if flags & !0x1 != 0 {
            return Err("ring address flags unknown");
        }
        let n = u64::from(self.ring_sizes.get(index).copied().unwrap_or(0));
        let desc = u64_at(p, 8).ok_or("short payload")?;
        let used = u64_at(p, 16).ok_or("short payload")?;
        let avail = u64_at(p, 24).ok_or("short payload")?;
        // Split ring layout with the EVENT_IDX fields counted in.
        let rings = [
            (desc, 16 * n, 16),
            (avail, 6 + 2 * n, 2),
            (used, 6 + 8 * n, 4),
        ];
        for (addr, len, align) in rings {
            if addr % align != 0 {
                return Err("ring address misaligned");
            }
            let inside = self.regions.iter().any(|r| {
                addr >= r.user_addr
                    && addr
                        .checked_add(len)
                        .is_some_and(|end| end <= r.user_addr + r.size)
            });
            if !inside {
                return Err("ring outside mapped memory");
            }
        }
        Ok(())
    }
}

/// The reply a refused message gets, if any: the frontend waits for one on
/// requests that have their own reply, and for REPLY_ACK when it asked.
pub fn refusal_reply(msg: &Message, reply_ack: bool) -> Option<Vec<u8>> {
    let payload: Vec<u8> = match msg.request {
        req::GET_FEATURES | req::GET_PROTOCOL_FEATURES | req::GET_QUEUE_NUM => {
            0u64.to_le_bytes().to_vec()
        }
        req::GET_MAX_MEM_SLOTS | req::CHECK_DEVICE_STATE => 1u64.to_le_bytes().to_vec(),
        req::SET_DEVICE_STATE_FD => 0x101u64.to_le_bytes().to_vec(),
        req::GET_VRING_BASE => {
            let index = u32_at(&msg.payload, 0).unwrap_or(0);
            let mut v = index.to_le_bytes().to_vec();
            v.extend_from_slice(&0u32.to_le_bytes());
            v
        }
        req::GET_CONFIG => {
            // A config reply of size 0 is how the protocol says "failed".
            let offset = u32_at(&msg.payload, 0).unwrap_or(0);
            let flags = u32_at(&msg.payload, 8).unwrap_or(0);
            let mut v = offset.to_le_bytes().to_vec();
            v.extend_from_slice(&0u32.to_le_bytes());
            v.extend_from_slice(&flags.to_le_bytes());
            v
        }
        _ if reply_ack && msg.flags & FLAG_NEED_REPLY != 0 => 1u64.to_le_bytes().to_vec(),
        _ => return None,
    };
    let mut out = Vec::with_capacity(HDR_LEN + payload.len());
    out.extend_from_slice(&msg.request.to_le_bytes());
    out.extend_from_slice(&(FLAG_VERSION_1 | FLAG_REPLY).to_le_bytes());
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&payload);
    Some(out)
}

/// Space for `MAX_FDS` descriptors in a control message.
const CMSG_BUF_LEN: usize = 256;

/// Receives up to `buf.len()` bytes, collecting descriptors into `fds`;
/// returns the number of bytes (0 at end of file) and whether descriptors
/// were truncated.
fn recv_some(
    sock: &UnixStream,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<(usize, bool)> {
    let mut cmsg = [0u64; CMSG_BUF_LEN / 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; zero is a valid empty value.
    let mut hdr: libc::msghdr = unsafe { mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = cmsg.as_mut_ptr().cast();
    hdr.msg_controllen = CMSG_BUF_LEN;
    let n = loop {
        // SAFETY: `hdr` points at `iov` (over `buf`) and `cmsg`, both alive
        // and as large as announced for the whole call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut hdr, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    };
    // SAFETY: `hdr` was filled by recvmsg; the CMSG macros walk the control
    // buffer within `msg_controllen`.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(&hdr) };
    while !c.is_null() {
        // SAFETY: `c` is a valid control message header inside `cmsg`.
        let (level, kind, len) = unsafe { ((*c).cmsg_level, (*c).cmsg_type, (*c).cmsg_len) };
        if level == libc::SOL_SOCKET && kind == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN(0) is a constant computation.
            let header = unsafe { libc::CMSG_LEN(0) } as usize;
            let count = len.saturating_sub(header) / mem::size_of::<RawFd>();
            // SAFETY: the data of an SCM_RIGHTS message is `count` ints.
            let data = unsafe { libc::CMSG_DATA(c) }.cast::<RawFd>();
            for i in 0..count {
                // SAFETY: `i < count` stays inside the message's data; the
                // kernel installed each descriptor for us, so we own it.
                let fd = unsafe { data.add(i).read_unaligned() };
                // SAFETY: as above, a fresh descriptor nobody else owns.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        // SAFETY: `hdr` and `c` are valid as above.
        c = unsafe { libc::CMSG_NXTHDR(&hdr, c) };
    }
    let truncated = hdr.msg_flags & libc::MSG_CTRUNC != 0;
    Ok((usize::try_from(n).unwrap_or(0), truncated))
}

/// Reads one whole message; `Ok(None)` at a clean end of file.
///
/// # Errors
/// The socket error, or `UnexpectedEof` if the peer closed mid-message.
pub fn recv_message(sock: &UnixStream) -> io::Result<Option<Message>> {
    let mut fds = Vec::new();
    let mut truncated = false;
    let mut hdr = [0u8; HDR_LEN];
    let mut got = 0;
    while got < HDR_LEN {
        let (n, t) = recv_some(sock, &mut hdr[got..], &mut fds)?;
        truncated |= t;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
    }
    let request = u32_at(&hdr, 0).unwrap_or(0);
    let flags = u32_at(&hdr, 4).unwrap_or(0);
    let size = u32_at(&hdr, 8).unwrap_or(0) as usize;
    let mut broken = truncated.then_some("descriptors truncated");
    let mut payload = vec![0u8; size.min(MAX_PAYLOAD)];
    let mut got = 0;
    let mut discard = [0u8; 4096];
    while got < size {
        let (n, t) = if got < payload.len() {
            recv_some(sock, &mut payload[got..], &mut fds)?
        } else {
            let want = (size - got).min(discard.len());
            recv_some(sock, &mut discard[..want], &mut fds)?
        };
        truncated |= t;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
    }
    if size > MAX_PAYLOAD {
        broken = Some("payload larger than 4 KiB");
    }
    if fds.len() > MAX_FDS || truncated {
        broken = Some("too many descriptors");
    }
    Ok(Some(Message {
        request,
        flags,
        payload,
        fds,
        broken,
    }))
}

/// Sends `bytes` with `fds` attached to the first part; retries short
/// writes.
fn send_all(sock: &UnixStream, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let mut sent = 0;
    let mut first = true;
    while sent < bytes.len() {
        let rest = &bytes[sent..];
        let iov = [IoSlice::new(rest)];
        let mut cmsg = [0u64; CMSG_BUF_LEN / 8];
        // SAFETY: msghdr is plain data; zero is a valid empty value.
        let mut hdr: libc::msghdr = unsafe { mem::zeroed() };
        hdr.msg_iov = iov.as_ptr().cast_mut().cast();
        hdr.msg_iovlen = 1;
        if first && !fds.is_empty() {
            let data_len = mem::size_of_val(fds);
            // SAFETY: CMSG_SPACE is a constant computation; MAX_FDS ints
            // fit CMSG_BUF_LEN.
            let space = unsafe { libc::CMSG_SPACE(data_len as u32) } as usize;
            hdr.msg_control = cmsg.as_mut_ptr().cast();
            hdr.msg_controllen = space.min(CMSG_BUF_LEN);
            // SAFETY: the control buffer holds `space` bytes; the header and
            // data written stay inside it.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(&hdr);
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_RIGHTS;
                (*c).cmsg_len = libc::CMSG_LEN(data_len as u32) as usize;
                std::ptr::copy_nonoverlapping(
                    fds.as_ptr(),
                    libc::CMSG_DATA(c).cast::<RawFd>(),
                    fds.len(),
                );
            }
        }
        // SAFETY: `hdr` points at `iov` and `cmsg`, alive for the call.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &hdr, libc::MSG_NOSIGNAL) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        first = false;
        sent += usize::try_from(n).unwrap_or(0);
    }
    Ok(())
}

/// Sends `msg` unchanged.
///
/// # Errors
/// The socket error.
pub fn send_message(sock: &UnixStream, msg: &Message) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(HDR_LEN + msg.payload.len());
    bytes.extend_from_slice(&msg.request.to_le_bytes());
    bytes.extend_from_slice(&msg.flags.to_le_bytes());
    bytes.extend_from_slice(&u32::try_from(msg.payload.len()).unwrap_or(0).to_le_bytes());
    bytes.extend_from_slice(&msg.payload);
    let fds: Vec<RawFd> = msg.fds.iter().map(AsRawFd::as_raw_fd).collect();
    send_all(sock, &bytes, &fds)
}

/// Where the display socket of a GPU_SET_SOCKET goes.
pub type DisplaySink = Box<dyn Fn(UnixStream) + Send>;

/// A running relay between one frontend connection and the library.
#[derive(Debug)]
pub struct Relay {
    frontend: UnixStream,
    library: UnixStream,
    forward: Option<JoinHandle<()>>,
    back: Option<JoinHandle<()>>,
}

impl Relay {
    /// Starts relaying between `frontend` and `library` (the end whose peer
    /// the library serves).
    ///
    /// # Errors
    /// Cloning a socket or spawning a thread failed.
    pub fn spawn(
        frontend: UnixStream,
        library: UnixStream,
        limits: GateLimits,
        metrics: Arc<Metrics>,
        display: DisplaySink,
    ) -> io::Result<Self> {
        let write_lock = Arc::new(Mutex::new(()));
        let forward = {
            let frontend = frontend.try_clone()?;
            let library = library.try_clone()?;
            let write_lock = Arc::clone(&write_lock);
            thread::Builder::new()
                .name("vugpu-gate".into())
                .spawn(move || {
                    forward_loop(&frontend, &library, limits, &metrics, &write_lock, &display);
                })?
        };
        let back = {
            let frontend = frontend.try_clone()?;
            let library = library.try_clone()?;
            thread::Builder::new()
                .name("vugpu-gate-reply".into())
                .spawn(move || back_loop(&library, &frontend, &write_lock))?
        };
        Ok(Self {
            frontend,
            library,
            forward: Some(forward),
            back: Some(back),
        })
    }

    /// Disconnects both sides and waits for the relay threads.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        let _ = self.frontend.shutdown(Shutdown::Both);
        let _ = self.library.shutdown(Shutdown::Both);
        for handle in [self.forward.take(), self.back.take()]
            .into_iter()
            .flatten()
        {
            let _ = handle.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

fn lock(m: &Mutex<()>) -> std::sync::MutexGuard<'_, ()> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn forward_loop(
    frontend: &UnixStream,
    library: &UnixStream,
    limits: GateLimits,
    metrics: &Metrics,
    write_lock: &Mutex<()>,
    display: &DisplaySink,
) {
    let mut gate = Gate::new(limits);
    let mut limiter = LogLimiter::new(REFUSAL_LOG_BURST);
    loop {
        let msg = match recv_message(frontend) {
            Ok(Some(msg)) => msg,
            Ok(None) => break,
            Err(e) => {
                debug!("vhost-user-gpu: frontend connection: {e}");
                break;
            }
        };
        match gate.check(&msg) {
            Verdict::Forward if msg.request == req::GPU_SET_SOCKET => {
                let need_ack = gate.reply_ack() && msg.flags & FLAG_NEED_REPLY != 0;
                if let Some(fd) = msg.fds.into_iter().next() {
                    display(UnixStream::from(fd));
                }
                if need_ack {
                    let mut ack = Vec::with_capacity(HDR_LEN + 8);
                    ack.extend_from_slice(&req::GPU_SET_SOCKET.to_le_bytes());
                    ack.extend_from_slice(&(FLAG_VERSION_1 | FLAG_REPLY).to_le_bytes());
                    ack.extend_from_slice(&8u32.to_le_bytes());
                    ack.extend_from_slice(&0u64.to_le_bytes());
                    let _guard = lock(write_lock);
                    if let Err(e) = send_all(frontend, &ack, &[]) {
                        debug!("vhost-user-gpu: acking GPU_SET_SOCKET: {e}");
                        break;
                    }
                }
            }
            Verdict::Forward => {
                if let Err(e) = send_message(library, &msg) {
                    debug!("vhost-user-gpu: forwarding to the backend: {e}");
                    break;
                }
            }
            Verdict::Refuse(reason) => {
                metrics.frontend_message_refused();
                guest_warn!(
                    limiter,
                    "vhost-user-gpu: refused vhost-user request {} ({} bytes, {} fds): {reason}",
                    msg.request,
                    msg.payload.len(),
                    msg.fds.len()
                );
                if let Some(reply) = refusal_reply(&msg, gate.reply_ack()) {
                    let _guard = lock(write_lock);
                    if let Err(e) = send_all(frontend, &reply, &[]) {
                        debug!("vhost-user-gpu: sending a refusal: {e}");
                        break;
                    }
                }
                // `msg.fds` are closed here.
            }
        }
    }
    // The frontend is gone: let the library see the disconnect.
    let _ = library.shutdown(Shutdown::Both);
}

fn back_loop(library: &UnixStream, frontend: &UnixStream, write_lock: &Mutex<()>) {
    loop {
        match recv_message(library) {
            Ok(Some(msg)) => {
                let _guard = lock(write_lock);
                if let Err(e) = send_message(frontend, &msg) {
                    debug!("vhost-user-gpu: replying to the frontend: {e}");
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                warn!("vhost-user-gpu: reading a backend reply: {e}");
                break;
            }
        }
    }
    let _ = frontend.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: GateLimits = GateLimits {
        virtio_features: (1 << 32) | (1 << 30),
        protocol_features: 0b10_0010_0000_1001, // MQ, REPLY_ACK, CONFIG, RESET_DEVICE
        num_queues: 2,
        max_queue_size: 1024,
    };

    fn msg(request: u32, payload: Vec<u8>) -> Message {
        Message {
            request,
            flags: FLAG_VERSION_1,
            payload,
            fds: Vec::new(),
            broken: None,
        }
    }

    #[test]
    fn test_gate_second_set_owner_is_refused_until_reset_owner() {
        let mut gate = Gate::new(LIMITS);

        let first = gate.check(&msg(req::SET_OWNER, vec![]));
        let second = gate.check(&msg(req::SET_OWNER, vec![]));
        gate.check(&msg(req::RESET_OWNER, vec![]));
        let third = gate.check(&msg(req::SET_OWNER, vec![]));

        assert_eq!(first, Verdict::Forward);
        assert!(matches!(second, Verdict::Refuse(_)));
        assert_eq!(third, Verdict::Forward);
    }

    #[test]
    fn test_gate_vring_enable_after_reset_device_is_forwarded_like_the_library_does() {
        // vhost's request handler checks the features of the last
        // SET_FEATURES, which RESET_DEVICE does not clear.
        let mut gate = Gate::new(LIMITS);
        let features = (1u64 << 30).to_le_bytes().to_vec();
        gate.check(&msg(
            req::SET_PROTOCOL_FEATURES,
            (1u64 << 13 | 1 << 3).to_le_bytes().to_vec(),
        ));
        gate.check(&msg(req::SET_FEATURES, features));

        let reset = gate.check(&msg(req::RESET_DEVICE, vec![]));
        let enable = gate.check(&msg(req::SET_VRING_ENABLE, vec![0, 0, 0, 0, 1, 0, 0, 0]));

        assert_eq!(reset, Verdict::Forward);
        assert_eq!(enable, Verdict::Forward);
    }

    #[test]
    fn test_gate_features_not_offered_are_refused() {
        let mut gate = Gate::new(LIMITS);

        let bad = gate.check(&msg(req::SET_FEATURES, (1u64 << 3).to_le_bytes().to_vec()));
        let good = gate.check(&msg(req::SET_FEATURES, (1u64 << 32).to_le_bytes().to_vec()));

        assert!(matches!(bad, Verdict::Refuse(_)));
        assert_eq!(good, Verdict::Forward);
    }

    #[test]
    fn test_refusal_reply_acks_only_when_asked_and_negotiated() {
        let mut m = msg(req::SET_VRING_NUM, vec![0; 8]);
        let silent = refusal_reply(&m, true);
        m.flags |= FLAG_NEED_REPLY;
        let not_negotiated = refusal_reply(&m, false);
        let nack = refusal_reply(&m, true).expect("a nack");

        assert!(silent.is_none());
        assert!(not_negotiated.is_none());
        assert_eq!(nack.len(), HDR_LEN + 8);
        assert_eq!(u64_at(&nack, HDR_LEN), Some(1));
    }

    /// xorshift64*: a deterministic source of hostile messages.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    #[test]
    fn test_gate_random_messages_never_panic() {
        // 100k messages of random codes (mostly the ones the gate knows),
        // flags, sizes and contents; the gate and the refusal reply must
        // give an answer for each.
        let mut gate = Gate::new(LIMITS);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..100_000 {
            let r = next(&mut state);
            let request = if r & 3 == 0 {
                (r >> 8) as u32
            } else {
                (r >> 8) as u32 % 45
            };
            let len = (next(&mut state) % 300) as usize;
            let payload: Vec<u8> = (0..len).map(|_| next(&mut state) as u8).collect();
            let m = Message {
                request,
                flags: (r >> 40) as u32 & 0x1f,
                payload,
                fds: Vec::new(),
                broken: None,
            };
            let verdict = gate.check(&m);
            if let Verdict::Refuse(_) = verdict {
                let _ = refusal_reply(&m, gate.reply_ack());
            }
        }
    }
}
