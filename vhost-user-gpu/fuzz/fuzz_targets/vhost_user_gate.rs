//! Fuzzes the daemon's own vhost-user message handling: the request gate
//! (`vhost_user_gpu::relay::Gate`) that decides, for every message from the
//! frontend, whether vhost-user-backend may see it, and the refusal reply.
//! Input: a sequence of messages (request code, flags, payload, number of
//! descriptors to attach, each a memfd of fuzzed size). Checked: no panic;
//! a forwarded SET_MEM_TABLE never has a region of size 0 or one beyond the
//! end of its file; a refusal reply, when there is one, is a well-formed
//! reply header for the same request with the size it announces.

#![no_main]

use std::os::fd::{FromRawFd, OwnedFd};

use libfuzzer_sys::fuzz_target;
use vhost_user_gpu::relay::{refusal_reply, Gate, GateLimits, Message, Verdict, HDR_LEN};

const LIMITS: GateLimits = GateLimits {
    virtio_features: (1 << 32) | (1 << 30) | (1 << 29) | (1 << 28) | 0b1111,
    protocol_features: (1 << 0) | (1 << 3) | (1 << 9) | (1 << 13),
    num_queues: 2,
    max_queue_size: 1024,
};

/// A memfd of `size` bytes, or `None` if the system refuses.
fn memfd(size: u64) -> Option<OwnedFd> {
    // SAFETY: the name is a valid NUL-terminated string; no other
    // preconditions.
    let fd = unsafe { libc::memfd_create(c"fuzz".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: memfd_create returned a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `fd` is open; ftruncate has no memory-safety preconditions.
    let rc = unsafe { libc::ftruncate(std::os::fd::AsRawFd::as_raw_fd(&fd), size as libc::off_t) };
    (rc == 0).then_some(fd)
}

fuzz_target!(|data: &[u8]| {
    let mut gate = Gate::new(LIMITS);
    let mut rest = data;
    while rest.len() >= 10 {
        let request = u32::from(rest[0] % 48);
        let flags = u32::from(rest[1]);
        let nfds = usize::from(rest[2] % 4);
        let file_size = u64::from(u16::from_le_bytes([rest[3], rest[4]])) << 12;
        let len = usize::from(u16::from_le_bytes([rest[5], rest[6]]) % 512);
        let body = &rest[7..];
        let len = len.min(body.len());
        let payload = body[..len].to_vec();
        rest = &body[len..];
        let fds: Vec<OwnedFd> = (0..nfds).filter_map(|_| memfd(file_size)).collect();
        let msg = Message {
            request,
            flags,
            payload,
            fds,
            broken: None,
        };
        match gate.check(&msg) {
            Verdict::Forward => {
                if request == 5 && msg.payload.len() >= 8 {
                    let n = u32::from_le_bytes([
                        msg.payload[0],
                        msg.payload[1],
                        msg.payload[2],
                        msg.payload[3],
                    ]) as usize;
                    for i in 0..n {
                        let at = 8 + i * 32;
                        let word = |o: usize| {
                            u64::from_le_bytes(msg.payload[at + o..at + o + 8].try_into().unwrap())
                        };
                        assert_ne!(word(8), 0, "region of size 0 forwarded");
                        assert!(
                            word(24) + word(8) <= file_size,
                            "region past its file forwarded"
                        );
                    }
                }
            }
            Verdict::Refuse(_) => {
                if let Some(reply) = refusal_reply(&msg, gate.reply_ack()) {
                    assert!(reply.len() >= HDR_LEN);
                    let word = |i: usize| u32::from_le_bytes(reply[i..i + 4].try_into().unwrap());
                    assert_eq!(word(0), request);
                    assert_eq!(word(4) & 0x4, 0x4);
                    assert_eq!(word(8) as usize, reply.len() - HDR_LEN);
                }
            }
        }
    }
});
