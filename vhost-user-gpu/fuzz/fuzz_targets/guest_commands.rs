//! Fuzzes what a guest controls: sequences of control and cursor queue
//! requests (any type, length, flags and body, split over one or two
//! readable descriptors, with a response buffer of any size) fed to the
//! daemon's `Device` over guest memory, interleaved with guest writes to
//! the memory that backings may point at. Checked: no panic, every chain
//! gets a used length no larger than its response buffer, and the device
//! keeps serving (a GET_DISPLAY_INFO at the end is answered OK).

#![no_main]

use std::sync::Arc;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use vhost_user_gpu::backend::Mailbox;
use vhost_user_gpu::config::DeviceConfig;
use vhost_user_gpu::device::{Device, QueueKind};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryAtomic, GuestMemoryMmap};
use vugpu_metrics::Metrics;

/// Guest memory: rings below 1 MiB, then requests, responses, and a
/// backing area the fuzzer writes into.
const MEM_SIZE: usize = 0x80_0000;
const REQ_ADDR: u64 = 0x10_0000;
const RESP_ADDR: u64 = 0x20_0000;
const DATA_ADDR: u64 = 0x30_0000;
const DATA_LEN: u64 = 0x50_0000;
const VRING_DESC_F_WRITE: u16 = 2;
const OK_DISPLAY_INFO: u32 = 0x1101;

/// Command types worth hitting: the 2D range, the 3D range, the cursor
/// commands (the rest of the input may still be any `u32`).
fn command_type(sel: u8, raw: [u8; 4]) -> u32 {
    match sel % 8 {
        0..=4 => 0x100 + u32::from(sel / 8 % 16),
        5 => 0x200 + u32::from(sel / 8 % 10),
        6 => 0x300 + u32::from(sel / 8 % 2),
        _ => u32::from_le_bytes(raw),
    }
}

fn submit(
    device: &mut Device,
    mem: &GuestMemoryMmap<()>,
    kind: QueueKind,
    request: &[u8],
    split: usize,
    resp_len: u32,
) -> Option<u32> {
    mem.write_slice(request, GuestAddress(REQ_ADDR)).ok()?;
    let queue = MockSplitQueue::new(mem, 16);
    let len = u32::try_from(request.len()).ok()?;
    let split = u32::try_from(split.min(request.len())).ok()?;
    let mut descs = Vec::new();
    if split > 0 && split < len {
        descs.push(RawDescriptor::from(Descriptor::new(REQ_ADDR, split, 0, 0)));
        descs.push(RawDescriptor::from(Descriptor::new(
            REQ_ADDR + u64::from(split),
            len - split,
            0,
            0,
        )));
    } else {
        descs.push(RawDescriptor::from(Descriptor::new(REQ_ADDR, len, 0, 0)));
    }
    if resp_len > 0 {
        descs.push(RawDescriptor::from(Descriptor::new(
            RESP_ADDR,
            resp_len,
            VRING_DESC_F_WRITE,
            0,
        )));
    }
    let chain = queue.build_desc_chain(&descs).ok()?;
    let used = device.process_chain(chain, mem, kind, Instant::now());
    if let Some(used) = used {
        assert!(used <= resp_len, "used {used} > response buffer {resp_len}");
    }
    used
}

fuzz_target!(|data: &[u8]| {
    let Ok(mem) = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE)]) else {
        return;
    };
    let config = DeviceConfig {
        blob: true,
        blob_swap: true,
        max_host_memory: 64 << 20,
        ..DeviceConfig::default()
    };
    let Ok(mut device) = Device::new(
        config,
        Arc::new(Metrics::new()),
        GuestMemoryAtomic::new(mem.clone()),
        Arc::new(Mailbox::default()),
    ) else {
        return;
    };
    let mut rest = data;
    while rest.len() >= 8 {
        let (head, tail) = rest.split_at(8);
        if head[0] >= 224 {
            // A guest write into the backing area.
            let off = u64::from(u32::from_le_bytes([head[1], head[2], head[3], 0])) % DATA_LEN;
            let len = usize::from(u16::from_le_bytes([head[4], head[5]])).min(tail.len());
            let _ = mem.write_slice(&tail[..len], GuestAddress(DATA_ADDR + off));
            rest = &tail[len..];
            continue;
        }
        let kind = if head[0] % 2 == 0 {
            QueueKind::Control
        } else {
            QueueKind::Cursor
        };
        let len = usize::from(u16::from_le_bytes([head[2], head[3]]) % 2048).min(tail.len());
        let mut request = tail[..len].to_vec();
        rest = &tail[len..];
        if request.len() >= 4 {
            let raw = [request[0], request[1], request[2], request[3]];
            request[..4].copy_from_slice(&command_type(head[1], raw).to_le_bytes());
        }
        let resp_len = match head[4] % 4 {
            0 => 0,
            1 => u32::from(head[5]),
            2 => 24,
            _ => 4096,
        };
        submit(&mut device, &mem, kind, &request, usize::from(head[6]) * 8, resp_len);
    }
    // Still serving: GET_DISPLAY_INFO answered OK.
    let mut info = vec![0u8; 24];
    info[..4].copy_from_slice(&0x100u32.to_le_bytes());
    let used = submit(&mut device, &mem, QueueKind::Control, &info, 0, 4096);
    let mut resp = [0u8; 4];
    mem.read_slice(&mut resp, GuestAddress(RESP_ADDR)).expect("response");
    assert!(used.is_some_and(|u| u >= 24));
    assert_eq!(u32::from_le_bytes(resp), OK_DISPLAY_INFO);
});
