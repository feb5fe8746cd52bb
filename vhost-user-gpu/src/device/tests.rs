//! Unit tests of the dispatcher and of per-chain processing, with guest
//! memory in an anonymous mapping and chains built by `MockSplitQueue`.

use std::sync::Arc;
use std::time::Instant;

use virtio_bindings::virtio_ring::VRING_DESC_F_WRITE;
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryAtomic, GuestMemoryMmap};
use vugpu_metrics::Metrics;
use vugpu_protocol::wire::{
    VIRTIO_GPU_FLAG_FENCE, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM,
    VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM, VIRTIO_GPU_F_EDID, VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
    VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY, VIRTIO_GPU_RESP_ERR_UNSPEC, VIRTIO_GPU_RESP_OK_NODATA,
};
use vugpu_protocol::{decode_header, CtrlHeader, GpuCommand, GpuResponse, MemEntry, Rect};

use super::{to_bgrx, Device, QueueKind};
use crate::backend::Mailbox;
use crate::config::DeviceConfig;

/// Guest memory size: room for the rings, a request, a response and a
/// resource's backing.
const MEM_SIZE: usize = 0x40_0000;
/// Where requests are placed (the rings live below 1 MiB).
const REQ_ADDR: u64 = 0x10_0000;
/// Where the device writes responses.
const RESP_ADDR: u64 = 0x20_0000;
/// Backing pages of test resources.
const BACKING_ADDR: u64 = 0x30_0000;
/// A 4x4 resource of 4-byte pixels.
const SIDE: u32 = 4;
const RES_BYTES: u32 = SIDE * SIDE * 4;

struct Fixture {
    mem: GuestMemoryMmap<()>,
    metrics: Arc<Metrics>,
    mailbox: Arc<Mailbox>,
    device: Device,
}

fn fixture() -> Fixture {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE)])
        .expect("anonymous guest memory");
    let metrics = Arc::new(Metrics::new());
    let mailbox = Arc::new(Mailbox::default());
    let device = Device::new(
        DeviceConfig::default(),
        Arc::clone(&metrics),
        GuestMemoryAtomic::new(mem.clone()),
        Arc::clone(&mailbox),
    )
    .expect("device state");
    Fixture {
        mem,
        metrics,
        mailbox,
        device,
    }
}

impl Fixture {
    /// Puts `cmd` with `hdr` on a one-chain queue (request descriptor, then
    /// a writable response descriptor of `resp_len` bytes unless 0) and
    /// returns the used length and the response bytes.
    fn submit_bytes(&mut self, request: &[u8], resp_len: u32) -> (u32, Vec<u8>) {
        self.submit_bytes_on(QueueKind::Control, request, resp_len)
    }

    /// [`Fixture::submit_bytes`] on the queue `kind`.
    fn submit_bytes_on(
        &mut self,
        kind: QueueKind,
        request: &[u8],
        resp_len: u32,
    ) -> (u32, Vec<u8>) {
        self.mem
            .write_slice(request, GuestAddress(REQ_ADDR))
            .expect("request fits");
        let queue = MockSplitQueue::new(&self.mem, 16);
        let mut descs = vec![RawDescriptor::from(SplitDescriptor::new(
            REQ_ADDR,
            u32::try_from(request.len()).expect("small request"),
            0,
            0,
        ))];
        if resp_len > 0 {
            descs.push(RawDescriptor::from(SplitDescriptor::new(
                RESP_ADDR,
                resp_len,
                u16::try_from(VRING_DESC_F_WRITE).expect("flag"),
                0,
            )));
        }
        let chain = queue.build_desc_chain(&descs).expect("chain");
        let used = self
            .device
            .process_chain(chain, &self.mem, kind, Instant::now())
            .expect("a reply");
        let mut out = vec![0u8; used as usize];
        self.mem
            .read_slice(&mut out, GuestAddress(RESP_ADDR))
            .expect("response readable");
        (used, out)
    }

    fn submit(&mut self, hdr: &CtrlHeader, cmd: &GpuCommand) -> CtrlHeader {
        let (used, out) = self.submit_bytes(&cmd.to_bytes(hdr), 64);
        assert!(used >= 24, "no response header written");
        decode_header(&out).expect("response header")
    }

    fn create_attached_resource(&mut self, id: u32) {
        let hdr = CtrlHeader::default();
        self.submit(
            &hdr,
            &GpuCommand::ResourceCreate2d {
                resource_id: id,
                format: VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM,
                width: SIDE,
                height: SIDE,
            },
        );
        let resp = self.submit(
            &hdr,
            &GpuCommand::ResourceAttachBacking {
                resource_id: id,
                entries: vec![MemEntry {
                    addr: BACKING_ADDR,
                    length: RES_BYTES,
                }],
            },
        );
        assert_eq!(resp.type_, VIRTIO_GPU_RESP_OK_NODATA);
    }
}

fn full_rect() -> Rect {
    Rect {
        x: 0,
        y: 0,
        width: SIDE,
        height: SIDE,
    }
}

#[test]
fn test_process_chain_fenced_detach_completes_after_backing_dropped() {
    let mut f = fixture();
    f.create_attached_resource(1);
    let hdr = CtrlHeader {
        flags: VIRTIO_GPU_FLAG_FENCE,
        fence_id: 77,
        ..Default::default()
    };

    let resp = f.submit(&hdr, &GpuCommand::ResourceDetachBacking { resource_id: 1 });

    assert_eq!(resp.type_, VIRTIO_GPU_RESP_OK_NODATA);
    assert_eq!(resp.flags & VIRTIO_GPU_FLAG_FENCE, VIRTIO_GPU_FLAG_FENCE);
    assert_eq!(resp.fence_id, 77);
    assert!(!f.device.state.has_backing(1));
    let m = f.metrics.snapshot();
    assert_eq!(m.detach_backing_total, 1);
    assert_eq!(m.detached_bytes_total, u64::from(RES_BYTES));
    assert_eq!(m.attached_bytes, 0);
    assert_eq!(m.fences_completed_total, 1);
    assert_eq!(m.detach_latency_seconds.count, 1);
}

#[test]
fn test_process_chain_detach_then_reattach_keeps_host_content() {
    let mut f = fixture();
    f.create_attached_resource(1);
    let pattern: Vec<u8> = (0..RES_BYTES).map(|i| (i % 251) as u8).collect();
    f.mem
        .write_slice(&pattern, GuestAddress(BACKING_ADDR))
        .expect("backing writable");
    let hdr = CtrlHeader::default();
    f.submit(
        &hdr,
        &GpuCommand::TransferToHost2d {
            resource_id: 1,
            rect: full_rect(),
            offset: 0,
        },
    );
    f.submit(&hdr, &GpuCommand::ResourceDetachBacking { resource_id: 1 });
    f.mem
        .write_slice(&[0xee; RES_BYTES as usize], GuestAddress(BACKING_ADDR))
        .expect("backing writable");

    let resp = f.submit(
        &hdr,
        &GpuCommand::ResourceAttachBacking {
            resource_id: 1,
            entries: vec![MemEntry {
                addr: BACKING_ADDR + 0x1000,
                length: RES_BYTES,
            }],
        },
    );

    assert_eq!(resp.type_, VIRTIO_GPU_RESP_OK_NODATA);
    let mut pixels = Vec::new();
    f.device
        .state
        .read_pixels(1, full_rect(), &mut pixels)
        .expect("pixels readable");
    assert_eq!(pixels, pattern);
}

#[test]
fn test_process_chain_transfer_without_backing_is_refused_access() {
    let mut f = fixture();
    f.create_attached_resource(1);
    let hdr = CtrlHeader::default();
    f.submit(&hdr, &GpuCommand::ResourceDetachBacking { resource_id: 1 });

    let resp = f.submit(
        &hdr,
        &GpuCommand::TransferToHost2d {
            resource_id: 1,
            rect: full_rect(),
            offset: 0,
        },
    );

    assert_eq!(resp.type_, VIRTIO_GPU_RESP_ERR_UNSPEC);
    let m = f.metrics.snapshot();
    assert_eq!(m.refused_guest_accesses_total, 1);
    assert_eq!(m.command_errors["err_unspec"], 1);
}

#[test]
fn test_process_chain_detach_without_backing_is_error_but_not_refused_access() {
    let mut f = fixture();
    f.create_attached_resource(1);
    let hdr = CtrlHeader::default();
    f.submit(&hdr, &GpuCommand::ResourceDetachBacking { resource_id: 1 });

    let resp = f.submit(&hdr, &GpuCommand::ResourceDetachBacking { resource_id: 1 });

    assert_eq!(resp.type_, VIRTIO_GPU_RESP_ERR_UNSPEC);
    assert_eq!(f.metrics.snapshot().refused_guest_accesses_total, 0);
}

#[test]
fn test_process_chain_without_writable_part_is_decode_error() {
    let mut f = fixture();
    let request = GpuCommand::GetDisplayInfo.to_bytes(&CtrlHeader::default());

    let (used, _) = f.submit_bytes(&request, 0);

    assert_eq!(used, 0);
    assert_eq!(f.metrics.snapshot().decode_errors_total, 1);
}

#[test]
fn test_process_chain_truncated_attach_is_invalid_parameter() {
    let mut f = fixture();
    let mut request = GpuCommand::ResourceAttachBacking {
        resource_id: 1,
        entries: vec![MemEntry {
            addr: BACKING_ADDR,
            length: RES_BYTES,
        }],
    }
    .to_bytes(&CtrlHeader::default());
    // nr_entries (bytes 28..32) claims 5 entries, one follows.
    request[28..32].copy_from_slice(&5u32.to_le_bytes());

    let (used, out) = f.submit_bytes(&request, 64);

    assert_eq!(used, 24);
    let resp = decode_header(&out).expect("header");
    assert_eq!(resp.type_, VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    let m = f.metrics.snapshot();
    assert_eq!(m.decode_errors_total, 1);
    assert_eq!(m.commands["resource_attach_backing"], 1);
}

#[test]
fn test_process_chain_unknown_command_is_unspec_and_counted_unknown() {
    let mut f = fixture();
    let mut request = GpuCommand::GetDisplayInfo.to_bytes(&CtrlHeader::default());
    request[0..4].copy_from_slice(&0x0777u32.to_le_bytes());

    let (used, out) = f.submit_bytes(&request, 64);

    assert_eq!(used, 24);
    assert_eq!(
        decode_header(&out).expect("header").type_,
        VIRTIO_GPU_RESP_ERR_UNSPEC
    );
    assert_eq!(f.metrics.snapshot().commands["unknown"], 1);
}

#[test]
fn test_process_chain_response_buffer_too_small_returns_zero() {
    let mut f = fixture();
    let request = GpuCommand::GetDisplayInfo.to_bytes(&CtrlHeader::default());

    // A header fits, the 408-byte display info does not.
    let (used, _) = f.submit_bytes(&request, 32);

    assert_eq!(used, 0);
    assert_eq!(f.metrics.snapshot().decode_errors_total, 1);
}

#[test]
fn test_dispatch_get_display_info_headless_reports_configured_mode() {
    let mut f = fixture();

    let (resp, _) = f
        .device
        .dispatch(GpuCommand::GetDisplayInfo, QueueKind::Control)
        .expect("display info");

    let GpuResponse::OkDisplayInfo(modes) = resp else {
        panic!("unexpected response {resp:?}");
    };
    assert_eq!(modes.len(), 1);
    assert!(modes[0].enabled);
    assert_eq!((modes[0].rect.width, modes[0].rect.height), (1280, 800));
}

#[test]
fn test_dispatch_get_edid_without_feature_is_unspec() {
    let mut f = fixture();

    let err = f
        .device
        .dispatch(GpuCommand::GetEdid { scanout: 0 }, QueueKind::Control)
        .expect_err("feature not acked");

    assert_eq!(err.code(), vugpu_protocol::ErrorCode::Unspec);
}

#[test]
fn test_dispatch_get_edid_with_feature_returns_generated_block() {
    let mut f = fixture();
    f.mailbox.set_acked_features(1 << VIRTIO_GPU_F_EDID);

    let (resp, _) = f
        .device
        .dispatch(GpuCommand::GetEdid { scanout: 0 }, QueueKind::Control)
        .expect("edid");

    let GpuResponse::OkEdid(edid) = resp else {
        panic!("unexpected response {resp:?}");
    };
    assert_eq!(edid.len(), 128);
    assert_eq!(&edid[..8], &[0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]);
}

#[test]
fn test_dispatch_create_blob_without_blob_feature_is_unspec() {
    let mut f = fixture();
    let cmd = GpuCommand::ResourceCreateBlob {
        resource_id: 1,
        blob_mem: 1,
        blob_flags: 0,
        blob_id: 0,
        size: 4096,
        entries: Vec::new(),
    };

    let err = f
        .device
        .dispatch(cmd, QueueKind::Control)
        .expect_err("blob not negotiated");

    assert_eq!(err.code(), vugpu_protocol::ErrorCode::Unspec);
    assert_eq!(f.device.state.resource_count(), 0);
}

#[test]
fn test_dispatch_cursor_command_on_control_queue_is_unspec() {
    let mut f = fixture();
    let cmd = GpuCommand::MoveCursor {
        pos: vugpu_protocol::CursorPos::default(),
        resource_id: 0,
    };

    let err = f
        .device
        .dispatch(cmd, QueueKind::Control)
        .expect_err("wrong queue");

    assert_eq!(err.code(), vugpu_protocol::ErrorCode::Unspec);
}

#[test]
fn test_dispatch_get_capset_info_without_capsets_is_invalid_parameter() {
    let mut f = fixture();

    let err = f
        .device
        .dispatch(
            GpuCommand::GetCapsetInfo { capset_index: 0 },
            QueueKind::Control,
        )
        .expect_err("no capsets");

    assert_eq!(err.code(), vugpu_protocol::ErrorCode::InvalidParameter);
}

#[test]
fn test_reset_drops_resources_and_attached_bytes() {
    let mut f = fixture();
    f.create_attached_resource(1);

    f.device.reset();

    assert_eq!(f.device.state.resource_count(), 0);
    let m = f.metrics.snapshot();
    assert_eq!(m.attached_bytes, 0);
    assert_eq!(m.resources, 0);
    assert_eq!(m.resources_destroyed_total, 1);
}

#[test]
fn test_to_bgrx_x8r8g8b8_bytes_are_reversed() {
    let mut px = [0x00, 0x11, 0x22, 0x33];

    to_bgrx(VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM, &mut px);

    assert_eq!(px, [0x33, 0x22, 0x11, 0x00]);
}

#[test]
fn test_to_bgrx_r8g8b8a8_swaps_red_and_blue() {
    let mut px = [0x11, 0x22, 0x33, 0x44];

    to_bgrx(VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM, &mut px);

    assert_eq!(px, [0x33, 0x22, 0x11, 0x44]);
}

/// A fake frontend on the other end of the display socket: answers the
/// protocol-feature and display-info requests, and records every other
/// message as (request, payload).
mod fake_display {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::sync::mpsc::{channel, Receiver};
    use std::thread;

    pub const GET_PROTOCOL_FEATURES: u32 = 1;
    pub const SET_PROTOCOL_FEATURES: u32 = 2;
    pub const GET_DISPLAY_INFO: u32 = 3;
    pub const SCANOUT: u32 = 7;
    pub const UPDATE: u32 = 8;
    const REPLY: u32 = 0x4;

    fn reply(sock: &mut UnixStream, request: u32, payload: &[u8]) {
        let mut msg = Vec::new();
        msg.extend_from_slice(&request.to_le_bytes());
        msg.extend_from_slice(&REPLY.to_le_bytes());
        msg.extend_from_slice(&u32::try_from(payload.len()).expect("len").to_le_bytes());
        msg.extend_from_slice(payload);
        sock.write_all(&msg).expect("reply");
    }

    /// Starts the fake frontend, whose display is `width` x `height`.
    pub fn spawn(mut sock: UnixStream, width: u32, height: u32) -> Receiver<(u32, Vec<u8>)> {
        let (tx, rx) = channel();
        thread::spawn(move || loop {
            let mut hdr = [0u8; 12];
            if sock.read_exact(&mut hdr).is_err() {
                return;
            }
            let word = |i: usize| u32::from_le_bytes(hdr[i..i + 4].try_into().expect("4 bytes"));
            let (request, size) = (word(0), word(8));
            let mut payload = vec![0u8; size as usize];
            if sock.read_exact(&mut payload).is_err() {
                return;
            }
            match request {
                GET_PROTOCOL_FEATURES => reply(&mut sock, request, &0u64.to_le_bytes()),
                SET_PROTOCOL_FEATURES => {}
                GET_DISPLAY_INFO => {
                    // virtio_gpu_resp_display_info: 24-byte header, 16 modes
                    // of (x, y, width, height, enabled, flags).
                    let mut info = vec![0u8; 24 + 16 * 24];
                    info[24 + 8..24 + 12].copy_from_slice(&width.to_le_bytes());
                    info[24 + 12..24 + 16].copy_from_slice(&height.to_le_bytes());
                    info[24 + 16..24 + 20].copy_from_slice(&1u32.to_le_bytes());
                    reply(&mut sock, request, &info);
                }
                _ => {
                    if tx.send((request, payload)).is_err() {
                        return;
                    }
                }
            }
        });
        rx
    }
}

fn with_fake_display(
    f: &mut Fixture,
    width: u32,
    height: u32,
) -> std::sync::mpsc::Receiver<(u32, Vec<u8>)> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let rx = fake_display::spawn(theirs, width, height);
    f.device.apply_pending(crate::backend::Pending {
        display: Some(ours),
        ..Default::default()
    });
    assert!(f.device.display.is_some(), "handshake failed");
    rx
}

fn next_message(rx: &std::sync::mpsc::Receiver<(u32, Vec<u8>)>) -> (u32, Vec<u8>) {
    rx.recv_timeout(std::time::Duration::from_secs(5))
        .expect("display message")
}

#[test]
fn test_display_get_display_info_comes_from_frontend() {
    let mut f = fixture();
    let _rx = with_fake_display(&mut f, 1024, 768);

    let (resp, _) = f
        .device
        .dispatch(GpuCommand::GetDisplayInfo, QueueKind::Control)
        .expect("display info");

    let GpuResponse::OkDisplayInfo(modes) = resp else {
        panic!("unexpected response {resp:?}");
    };
    assert_eq!((modes[0].rect.width, modes[0].rect.height), (1024, 768));
    assert!(modes[0].enabled);
}

#[test]
fn test_display_set_scanout_and_flush_send_scanout_and_pixels() {
    let mut f = fixture();
    let rx = with_fake_display(&mut f, 1024, 768);
    f.create_attached_resource(1);
    // One B8G8R8X8 pixel pattern: pixel i has bytes (i, i+1, i+2, i+3).
    let pattern: Vec<u8> = (0..RES_BYTES).map(|i| i as u8).collect();
    f.mem
        .write_slice(&pattern, GuestAddress(BACKING_ADDR))
        .expect("backing writable");
    let hdr = CtrlHeader::default();
    f.submit(
        &hdr,
        &GpuCommand::TransferToHost2d {
            resource_id: 1,
            rect: full_rect(),
            offset: 0,
        },
    );

    f.submit(
        &hdr,
        &GpuCommand::SetScanout {
            scanout_id: 0,
            resource_id: 1,
            rect: full_rect(),
        },
    );
    f.submit(
        &hdr,
        &GpuCommand::ResourceFlush {
            resource_id: 1,
            rect: full_rect(),
        },
    );

    let (request, payload) = next_message(&rx);
    assert_eq!(request, fake_display::SCANOUT);
    assert_eq!(payload[..12], [0, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0]);
    // One update from SET_SCANOUT, one from RESOURCE_FLUSH: both carry the
    // 20-byte VhostUserGpuUpdate header and the full 4x4 image.
    assert_full_update(next_message(&rx), &pattern);
    assert_full_update(next_message(&rx), &pattern);
}

#[test]
fn test_display_flush_of_lower_rows_sends_those_rows() {
    let mut f = fixture();
    let rx = with_fake_display(&mut f, 1024, 768);
    f.create_attached_resource(1);
    let pattern: Vec<u8> = (0..RES_BYTES).map(|i| i as u8).collect();
    f.mem
        .write_slice(&pattern, GuestAddress(BACKING_ADDR))
        .expect("backing writable");
    let hdr = CtrlHeader::default();
    f.submit(
        &hdr,
        &GpuCommand::TransferToHost2d {
            resource_id: 1,
            rect: full_rect(),
            offset: 0,
        },
    );
    f.submit(
        &hdr,
        &GpuCommand::SetScanout {
            scanout_id: 0,
            resource_id: 1,
            rect: full_rect(),
        },
    );
    let _scanout = next_message(&rx);
    let _full = next_message(&rx);
    // Rows 2 and 3 at full width: a band that does not start at row 0.
    let lower = Rect {
        x: 0,
        y: 2,
        width: SIDE,
        height: 2,
    };

    f.submit(
        &hdr,
        &GpuCommand::ResourceFlush {
            resource_id: 1,
            rect: lower,
        },
    );

    let (request, payload) = next_message(&rx);
    assert_eq!(request, fake_display::UPDATE);
    // VhostUserGpuUpdate: scanout 0, x 0, y 2, width 4, height 2.
    assert_eq!(
        payload[..20],
        [0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0]
    );
    // B8G8R8X8 needs no conversion: the rows exactly as transferred.
    let row_bytes = (SIDE * 4) as usize;
    assert_eq!(&payload[20..], &pattern[2 * row_bytes..4 * row_bytes]);
}

#[test]
fn test_attach_backing_on_cursor_queue_is_unspec_and_attaches_nothing() {
    let mut f = fixture();
    let hdr = CtrlHeader::default();
    f.submit(
        &hdr,
        &GpuCommand::ResourceCreate2d {
            resource_id: 1,
            format: VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM,
            width: SIDE,
            height: SIDE,
        },
    );
    let attach = GpuCommand::ResourceAttachBacking {
        resource_id: 1,
        entries: vec![MemEntry {
            addr: BACKING_ADDR,
            length: RES_BYTES,
        }],
    };

    let (used, out) = f.submit_bytes_on(QueueKind::Cursor, &attach.to_bytes(&hdr), 64);

    assert_eq!(used, 24);
    let resp = decode_header(&out).expect("response header");
    assert_eq!(resp.type_, VIRTIO_GPU_RESP_ERR_UNSPEC);
    assert!(!f.device.state.has_backing(1));
}

fn assert_full_update((request, payload): (u32, Vec<u8>), pattern: &[u8]) {
    assert_eq!(request, fake_display::UPDATE);
    assert_eq!(&payload[12..20], &[4, 0, 0, 0, 4, 0, 0, 0]);
    assert_eq!(&payload[20..], pattern);
}

fn small_fixture(max_host_memory: u64) -> Fixture {
    let mut f = fixture();
    f.device = Device::new(
        DeviceConfig {
            max_host_memory,
            ..DeviceConfig::default()
        },
        Arc::clone(&f.metrics),
        GuestMemoryAtomic::new(f.mem.clone()),
        Arc::clone(&f.mailbox),
    )
    .expect("device state");
    f
}

#[test]
fn test_create_2d_beyond_resource_count_limit_is_out_of_memory() {
    // 16 KiB of host memory allows 16 KiB / 4 KiB = 4 resources.
    let mut f = small_fixture(16 * 1024);
    let create = |id| GpuCommand::ResourceCreate2d {
        resource_id: id,
        format: VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM,
        width: 1,
        height: 1,
    };
    let hdr = CtrlHeader::default();
    for id in 1..=4 {
        assert_eq!(f.submit(&hdr, &create(id)).type_, VIRTIO_GPU_RESP_OK_NODATA);
    }

    let resp = f.submit(&hdr, &create(5));

    assert_eq!(resp.type_, VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
    assert_eq!(f.device.state.resource_count(), 4);
}

#[test]
fn test_attach_beyond_range_limit_is_out_of_memory_and_detach_releases() {
    // 16 KiB of host memory allows 16 KiB / 256 B = 64 ranges.
    let mut f = small_fixture(16 * 1024);
    let hdr = CtrlHeader::default();
    f.submit(
        &hdr,
        &GpuCommand::ResourceCreate2d {
            resource_id: 1,
            format: VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM,
            width: 1,
            height: 1,
        },
    );
    // 65 scattered 4-byte entries (gaps prevent coalescing).
    let scattered: Vec<MemEntry> = (0..65)
        .map(|i| MemEntry {
            addr: BACKING_ADDR + i * 16,
            length: 4,
        })
        .collect();

    let refused = f.submit(
        &hdr,
        &GpuCommand::ResourceAttachBacking {
            resource_id: 1,
            entries: scattered.clone(),
        },
    );
    let accepted = f.submit(
        &hdr,
        &GpuCommand::ResourceAttachBacking {
            resource_id: 1,
            entries: scattered[..64].to_vec(),
        },
    );
    f.submit(&hdr, &GpuCommand::ResourceDetachBacking { resource_id: 1 });

    assert_eq!(refused.type_, VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
    assert_eq!(accepted.type_, VIRTIO_GPU_RESP_OK_NODATA);
    assert_eq!(f.device.budget.ranges, 0);
}
