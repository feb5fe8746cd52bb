//! Unit tests of decoding, encoding and the config space. Requests are built
//! from the wire structs directly (not with `GpuCommand::to_bytes`), so the
//! decoder is checked against the layout, not against its own encoder.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::mem::size_of;

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, IntoBytes};

use crate::wire::*;
use crate::*;

// ---------------------------------------------------------------------------
// Allocation tracking: the largest single allocation made by the current
// thread while tracking is on. Lets tests prove that a huge `nr_entries`
// never reaches the allocator.
// ---------------------------------------------------------------------------

struct TrackingAllocator;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees carry over; the bookkeeping only
// touches const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for TrackingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        // SAFETY: same contract as ours, forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        // SAFETY: same contract as ours, forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation(new_size);
        // SAFETY: same contract as ours, forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn note_allocation(size: usize) {
    // `try_with` because the allocator also runs during thread teardown.
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

#[global_allocator]
static ALLOCATOR: TrackingAllocator = TrackingAllocator;

/// Runs `f` and returns its result with the largest allocation it made.
fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.with(|l| l.set(0));
    TRACKING.with(|t| t.set(true));
    let r = f();
    TRACKING.with(|t| t.set(false));
    (r, LARGEST.with(|l| l.get()))
}

// ---------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------

const FENCE_ID: u64 = 0x0123_4567_89ab_cdef;

fn hdr(type_: u32) -> virtio_gpu_ctrl_hdr {
    virtio_gpu_ctrl_hdr {
        type_: U32::new(type_),
        ..Default::default()
    }
}

fn fenced_hdr(type_: u32) -> virtio_gpu_ctrl_hdr {
    virtio_gpu_ctrl_hdr {
        type_: U32::new(type_),
        flags: U32::new(VIRTIO_GPU_FLAG_FENCE),
        fence_id: U64::new(FENCE_ID),
        ctx_id: U32::new(5),
        ring_idx: 0,
        padding: [0; 3],
    }
}

fn rect(x: u32, y: u32, width: u32, height: u32) -> virtio_gpu_rect {
    virtio_gpu_rect {
        x: x.into(),
        y: y.into(),
        width: width.into(),
        height: height.into(),
    }
}

fn entry(addr: u64, length: u32) -> virtio_gpu_mem_entry {
    virtio_gpu_mem_entry {
        addr: addr.into(),
        length: length.into(),
        padding: 0.into(),
    }
}

fn decode(bytes: &[u8]) -> Result<(CtrlHeader, GpuCommand), DecodeError> {
    decode_command(bytes, &DecodeLimits::default())
}

fn decode_cmd(bytes: &[u8]) -> GpuCommand {
    match decode(bytes) {
        Ok((_, cmd)) => cmd,
        Err(e) => panic!("decode failed: {e}"),
    }
}

/// An ATTACH_BACKING request announcing `nr_entries` and carrying `present`
/// well-formed entries.
fn attach_bytes(nr_entries: u32, present: usize) -> Vec<u8> {
    let fixed = virtio_gpu_resource_attach_backing {
        hdr: hdr(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING),
        resource_id: 9.into(),
        nr_entries: nr_entries.into(),
    };
    let mut bytes = fixed.as_bytes().to_vec();
    for i in 0..present as u64 {
        bytes.extend_from_slice(entry(0x10_0000 + i * 0x1000, 0x1000).as_bytes());
    }
    bytes
}

fn limits(max: u32) -> DecodeLimits {
    DecodeLimits {
        max_backing_entries: max,
    }
}

// ---------------------------------------------------------------------------
// Header.
// ---------------------------------------------------------------------------

#[test]
fn test_decode_header_fenced_request_all_fields_decoded() {
    let mut h = fenced_hdr(VIRTIO_GPU_CMD_RESOURCE_FLUSH);
    h.flags = U32::new(VIRTIO_GPU_FLAG_FENCE | VIRTIO_GPU_FLAG_INFO_RING_IDX);
    h.ring_idx = 2;

    let decoded = decode_header(h.as_bytes()).expect("24-byte header");

    assert_eq!(
        decoded,
        CtrlHeader {
            type_: VIRTIO_GPU_CMD_RESOURCE_FLUSH,
            flags: VIRTIO_GPU_FLAG_FENCE | VIRTIO_GPU_FLAG_INFO_RING_IDX,
            fence_id: FENCE_ID,
            ctx_id: 5,
            ring_idx: 2,
        }
    );
    assert!(decoded.is_fenced());
    assert!(decoded.has_ring_idx());
}

#[test]
fn test_decode_header_unfenced_is_fenced_false() {
    let decoded = decode_header(hdr(VIRTIO_GPU_CMD_GET_DISPLAY_INFO).as_bytes()).expect("header");

    assert!(!decoded.is_fenced());
    assert!(!decoded.has_ring_idx());
}

#[test]
fn test_decode_command_empty_input_too_short() {
    let result = decode(&[]);

    assert_eq!(
        result,
        Err(DecodeError::TooShort {
            what: "virtio_gpu_ctrl_hdr",
            need: 24,
            have: 0
        })
    );
}

#[test]
fn test_decode_command_23_byte_header_too_short() {
    let h = hdr(VIRTIO_GPU_CMD_GET_DISPLAY_INFO);

    let result = decode(&h.as_bytes()[..23]);

    assert_eq!(
        result,
        Err(DecodeError::TooShort {
            what: "virtio_gpu_ctrl_hdr",
            need: 24,
            have: 23
        })
    );
}

#[test]
fn test_decode_header_bad_body_still_gives_fence() {
    // A fenced ATTACH with a truncated body: decoding fails, but the daemon
    // can still echo the fence from the header.
    let bytes = fenced_hdr(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING)
        .as_bytes()
        .to_vec();

    let cmd = decode(&bytes);
    let header = decode_header(&bytes).expect("header present");

    assert!(cmd.is_err());
    assert_eq!(header.fence_id, FENCE_ID);
    assert!(header.is_fenced());
}

// ---------------------------------------------------------------------------
// Happy path, one test per served command.
// ---------------------------------------------------------------------------

#[test]
fn test_decode_get_display_info_header_only_ok() {
    let (h, cmd) = decode(fenced_hdr(VIRTIO_GPU_CMD_GET_DISPLAY_INFO).as_bytes()).expect("valid");

    assert_eq!(cmd, GpuCommand::GetDisplayInfo);
    assert_eq!(h.fence_id, FENCE_ID);
}

#[test]
fn test_decode_get_edid_ok() {
    let c = virtio_gpu_cmd_get_edid {
        hdr: hdr(VIRTIO_GPU_CMD_GET_EDID),
        scanout: 3.into(),
        padding: 0.into(),
    };

    assert_eq!(decode_cmd(c.as_bytes()), GpuCommand::GetEdid { scanout: 3 });
}

#[test]
fn test_decode_resource_create_2d_ok() {
    let c = virtio_gpu_resource_create_2d {
        hdr: hdr(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D),
        resource_id: 7.into(),
        format: VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM.into(),
        width: 1280.into(),
        height: 800.into(),
    };

    assert_eq!(
        decode_cmd(c.as_bytes()),
        GpuCommand::ResourceCreate2d {
            resource_id: 7,
            format: VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM,
            width: 1280,
            height: 800
        }
    );
}

#[test]
fn test_decode_resource_unref_ok() {
    let c = virtio_gpu_resource_unref {
        hdr: hdr(VIRTIO_GPU_CMD_RESOURCE_UNREF),
        resource_id: 0xdead_beef.into(),
        padding: 0.into(),
    };

    assert_eq!(
        decode_cmd(c.as_bytes()),
        GpuCommand::ResourceUnref {
            resource_id: 0xdead_beef
        }
    );
}

#[test]
fn test_decode_set_scanout_ok() {
    let c = virtio_gpu_set_scanout {
        hdr: hdr(VIRTIO_GPU_CMD_SET_SCANOUT),
        r: rect(1, 2, 640, 480),
        scanout_id: 1.into(),
        resource_id: 4.into(),
    };

    assert_eq!(
        decode_cmd(c.as_bytes()),
        GpuCommand::SetScanout {
            scanout_id: 1,
            resource_id: 4,
            rect: Rect {
                x: 1,
                y: 2,
                width: 640,
                height: 480
            }
        }
    );
}

#[test]
fn test_decode_resource_flush_ok() {
    let c = virtio_gpu_resource_flush {
        hdr: hdr(VIRTIO_GPU_CMD_RESOURCE_FLUSH),
        r: rect(0, 0, 16, 8),
        resource_id: 4.into(),
        padding: 0.into(),
    };

    assert_eq!(
        decode_cmd(c.as_bytes()),
        GpuCommand::ResourceFlush {
            resource_id: 4,
            rect: Rect {
                x: 0,
                y: 0,
                width: 16,
                height: 8
            }
        }
    );
}

#[test]
fn test_decode_transfer_to_host_2d_ok() {
    let c = virtio_gpu_transfer_to_host_2d {
        hdr: hdr(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D),
        r: rect(3, 4, 5, 6),
        offset: 0x1_0000_0010.into(),
        resource_id: 4.into(),
        padding: 0.into(),
    };

    assert_eq!(
        decode_cmd(c.as_bytes()),
        GpuCommand::TransferToHost2d {
            resource_id: 4,
            rect: Rect {
                x: 3,
                y: 4,
                width: 5,
                height: 6
            },
            offset: 0x1_0000_0010
        }
    );
}

#[test]
fn test_decode_attach_backing_two_entries_ok() {
    let bytes = attach_bytes(2, 2);

    assert_eq!(
        decode_cmd(&bytes),
        GpuCommand::ResourceAttachBacking {
            resource_id: 9,
            entries: vec![
                MemEntry {
                    addr: 0x10_0000,
                    length: 0x1000
                },
                MemEntry {
                    addr: 0x10_1000,
                    length: 0x1000
                },
            ]
        }
    );
}

#[test]
fn test_decode_attach_backing_zero_entries_decodes_empty() {
    // Documented choice: well formed on the wire, rejected by the resource
    // state machine with ERR_INVALID_PARAMETER.
    let bytes = attach_bytes(0, 0);

    assert_eq!(
        decode_cmd(&bytes),
        GpuCommand::ResourceAttachBacking {
            resource_id: 9,
            entries: vec![]
        }
    );
}

#[test]
fn test_decode_detach_backing_ok() {
    let c = virtio_gpu_resource_detach_backing {
        hdr: hdr(VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING),
        resource_id: 12.into(),
        padding: 0.into(),
    };

    assert_eq!(
        decode_cmd(c.as_bytes()),
        GpuCommand::ResourceDetachBacking { resource_id: 12 }
    );
}

#[test]
fn test_decode_get_capset_info_ok() {
    let c = virtio_gpu_get_capset_info {
        hdr: hdr(VIRTIO_GPU_CMD_GET_CAPSET_INFO),
        capset_index: 1.into(),
        padding: 0.into(),
    };

    assert_eq!(
        decode_cmd(c.as_bytes()),
        GpuCommand::GetCapsetInfo { capset_index: 1 }
    );
}

#[test]
fn test_decode_get_capset_ok() {
    let c = virtio_gpu_get_capset {
        hdr: hdr(VIRTIO_GPU_CMD_GET_CAPSET),
        capset_id: 2.into(),
        capset_version: 1.into(),
    };

    assert_eq!(
        decode_cmd(c.as_bytes()),
        GpuCommand::GetCapset {
            capset_id: 2,
            capset_version: 1
        }
    );
}

#[test]
fn test_decode_resource_assign_uuid_ok() {
    let c = virtio_gpu_resource_assign_uuid {
        hdr: hdr(VIRTIO_GPU_CMD_RESOURCE_ASSIGN_UUID),
        resource_id: 8.into(),
        padding: 0.into(),
    };

    assert_eq!(
        decode_cmd(c.as_bytes()),
        GpuCommand::ResourceAssignUuid { resource_id: 8 }
    );
}

#[test]
fn test_decode_create_blob_with_entry_ok() {
    let c = virtio_gpu_resource_create_blob {
        hdr: hdr(VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB),
        resource_id: 20.into(),
        blob_mem: VIRTIO_GPU_BLOB_MEM_GUEST.into(),
        blob_flags: VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE.into(),
        nr_entries: 1.into(),
        blob_id: 0.into(),
        size: 0x4000.into(),
    };
    let mut bytes = c.as_bytes().to_vec();
    bytes.extend_from_slice(entry(0x20_0000, 0x4000).as_bytes());

    assert_eq!(
        decode_cmd(&bytes),
        GpuCommand::ResourceCreateBlob {
            resource_id: 20,
            blob_mem: VIRTIO_GPU_BLOB_MEM_GUEST,
            blob_flags: VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE,
            blob_id: 0,
            size: 0x4000,
            entries: vec![MemEntry {
                addr: 0x20_0000,
                length: 0x4000
            }]
        }
    );
}

#[test]
fn test_decode_create_blob_zero_entries_ok() {
    let c = virtio_gpu_resource_create_blob {
        hdr: hdr(VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB),
        resource_id: 21.into(),
        blob_mem: VIRTIO_GPU_BLOB_MEM_GUEST.into(),
        blob_flags: 0.into(),
        nr_entries: 0.into(),
        blob_id: 0x55.into(),
        size: 0x1000.into(),
    };

    assert_eq!(
        decode_cmd(c.as_bytes()),
        GpuCommand::ResourceCreateBlob {
            resource_id: 21,
            blob_mem: VIRTIO_GPU_BLOB_MEM_GUEST,
            blob_flags: 0,
            blob_id: 0x55,
            size: 0x1000,
            entries: vec![]
        }
    );
}

#[test]
fn test_decode_set_scanout_blob_ok() {
    let c = virtio_gpu_set_scanout_blob {
        hdr: hdr(VIRTIO_GPU_CMD_SET_SCANOUT_BLOB),
        r: rect(0, 0, 1280, 800),
        scanout_id: 0.into(),
        resource_id: 20.into(),
        width: 1280.into(),
        height: 800.into(),
        format: VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM.into(),
        padding: 0.into(),
        strides: [5120, 1, 2, 3].map(U32::new),
        offsets: [0, 4, 5, 6].map(U32::new),
    };

    assert_eq!(
        decode_cmd(c.as_bytes()),
        GpuCommand::SetScanoutBlob {
            scanout_id: 0,
            resource_id: 20,
            width: 1280,
            height: 800,
            format: VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM,
            strides: [5120, 1, 2, 3],
            offsets: [0, 4, 5, 6],
            rect: Rect {
                x: 0,
                y: 0,
                width: 1280,
                height: 800
            }
        }
    );
}

#[test]
fn test_decode_update_cursor_ok() {
    let c = virtio_gpu_update_cursor {
        hdr: hdr(VIRTIO_GPU_CMD_UPDATE_CURSOR),
        pos: virtio_gpu_cursor_pos {
            scanout_id: 0.into(),
            x: 100.into(),
            y: 200.into(),
            padding: 0.into(),
        },
        resource_id: 30.into(),
        hot_x: 2.into(),
        hot_y: 3.into(),
        padding: 0.into(),
    };

    let cmd = decode_cmd(c.as_bytes());

    assert_eq!(
        cmd,
        GpuCommand::UpdateCursor {
            pos: CursorPos {
                scanout_id: 0,
                x: 100,
                y: 200
            },
            resource_id: 30,
            hot_x: 2,
            hot_y: 3
        }
    );
    assert!(cmd.is_cursor());
}

#[test]
fn test_decode_move_cursor_ok() {
    let c = virtio_gpu_update_cursor {
        hdr: hdr(VIRTIO_GPU_CMD_MOVE_CURSOR),
        pos: virtio_gpu_cursor_pos {
            scanout_id: 1.into(),
            x: 7.into(),
            y: 9.into(),
            padding: 0.into(),
        },
        // MOVE_CURSOR carries the resource id too: 0 would mean "hide".
        resource_id: 5.into(),
        ..Default::default()
    };

    assert_eq!(
        decode_cmd(c.as_bytes()),
        GpuCommand::MoveCursor {
            pos: CursorPos {
                scanout_id: 1,
                x: 7,
                y: 9
            },
            resource_id: 5,
        }
    );
}

#[test]
fn test_decode_trailing_bytes_ignored() {
    let c = virtio_gpu_resource_unref {
        hdr: hdr(VIRTIO_GPU_CMD_RESOURCE_UNREF),
        resource_id: 3.into(),
        padding: 0.into(),
    };
    let mut bytes = c.as_bytes().to_vec();
    bytes.extend_from_slice(&[0xff; 40]);

    assert_eq!(
        decode_cmd(&bytes),
        GpuCommand::ResourceUnref { resource_id: 3 }
    );
}

#[test]
fn test_decode_unaligned_input_ok() {
    // Guest bytes copied into a buffer at an odd offset must still decode.
    let c = virtio_gpu_transfer_to_host_2d {
        hdr: hdr(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D),
        offset: 77.into(),
        resource_id: 2.into(),
        ..Default::default()
    };
    let mut buf = vec![0u8; 1];
    buf.extend_from_slice(c.as_bytes());

    let cmd = decode_cmd(&buf[1..]);

    assert!(matches!(
        cmd,
        GpuCommand::TransferToHost2d {
            resource_id: 2,
            offset: 77,
            ..
        }
    ));
}

// ---------------------------------------------------------------------------
// Short bodies.
// ---------------------------------------------------------------------------

/// Every served command type with a body, the C struct the decoder reads
/// and its size.
const FIXED_SIZES: [(u32, &str, usize); 15] = [
    (VIRTIO_GPU_CMD_GET_EDID, "virtio_gpu_cmd_get_edid", 32),
    (
        VIRTIO_GPU_CMD_RESOURCE_CREATE_2D,
        "virtio_gpu_resource_create_2d",
        40,
    ),
    (
        VIRTIO_GPU_CMD_RESOURCE_UNREF,
        "virtio_gpu_resource_unref",
        32,
    ),
    (VIRTIO_GPU_CMD_SET_SCANOUT, "virtio_gpu_set_scanout", 48),
    (
        VIRTIO_GPU_CMD_RESOURCE_FLUSH,
        "virtio_gpu_resource_flush",
        48,
    ),
    (
        VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D,
        "virtio_gpu_transfer_to_host_2d",
        56,
    ),
    (
        VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING,
        "virtio_gpu_resource_attach_backing",
        32,
    ),
    (
        VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING,
        "virtio_gpu_resource_detach_backing",
        32,
    ),
    (
        VIRTIO_GPU_CMD_GET_CAPSET_INFO,
        "virtio_gpu_get_capset_info",
        32,
    ),
    (VIRTIO_GPU_CMD_GET_CAPSET, "virtio_gpu_get_capset", 32),
    (
        VIRTIO_GPU_CMD_RESOURCE_ASSIGN_UUID,
        "virtio_gpu_resource_assign_uuid",
        32,
    ),
    (
        VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB,
        "virtio_gpu_resource_create_blob",
        56,
    ),
    (
        VIRTIO_GPU_CMD_SET_SCANOUT_BLOB,
        "virtio_gpu_set_scanout_blob",
        96,
    ),
    (VIRTIO_GPU_CMD_UPDATE_CURSOR, "virtio_gpu_update_cursor", 56),
    (VIRTIO_GPU_CMD_MOVE_CURSOR, "virtio_gpu_update_cursor", 56),
];

#[test]
fn test_decode_each_command_one_byte_short_too_short() {
    // Table-driven: one case per command, each failing with its own name.
    for (type_, what, size) in FIXED_SIZES {
        let mut bytes = vec![0u8; size - 1];
        bytes[..24].copy_from_slice(hdr(type_).as_bytes());

        let result = decode(&bytes);

        assert_eq!(
            result,
            Err(DecodeError::TooShort {
                what,
                need: size,
                have: size - 1
            }),
            "{}",
            command_c_name(type_)
        );
    }
}

#[test]
fn test_decode_each_command_header_only_too_short() {
    for (type_, what, size) in FIXED_SIZES {
        let result = decode(hdr(type_).as_bytes());

        assert_eq!(
            result,
            Err(DecodeError::TooShort {
                what,
                need: size,
                have: 24
            }),
            "{}",
            command_c_name(type_)
        );
    }
}

#[test]
fn test_decode_each_command_exact_size_ok() {
    for (type_, _, size) in FIXED_SIZES {
        let mut bytes = vec![0u8; size];
        bytes[..24].copy_from_slice(hdr(type_).as_bytes());

        let result = decode(&bytes);

        assert!(result.is_ok(), "{}: {result:?}", command_c_name(type_));
    }
}

// ---------------------------------------------------------------------------
// Memory entries.
// ---------------------------------------------------------------------------

#[test]
fn test_decode_attach_nr_entries_u32_max_few_bytes_no_large_allocation() {
    // Even with the limit lifted to u32::MAX, a 0xffffffff count backed by
    // two entries' worth of bytes must fail before allocating anything of
    // that size (0xffffffff * 16 bytes would abort the daemon).
    let bytes = attach_bytes(u32::MAX, 2);
    let lifted = limits(u32::MAX);

    let (result, largest) = largest_allocation(|| decode_command(&bytes, &lifted));

    assert_eq!(
        result,
        Err(DecodeError::EntriesTruncated {
            count: u32::MAX,
            have_bytes: 32
        })
    );
    assert!(largest < 4096, "largest allocation {largest} bytes");
}

#[test]
fn test_decode_attach_nr_entries_u32_max_default_limit_too_many() {
    let bytes = attach_bytes(u32::MAX, 2);

    let (result, largest) = largest_allocation(|| decode(&bytes));

    assert_eq!(
        result,
        Err(DecodeError::TooManyEntries {
            count: u32::MAX,
            max: DEFAULT_MAX_BACKING_ENTRIES
        })
    );
    assert!(largest < 4096, "largest allocation {largest} bytes");
}

#[test]
fn test_decode_attach_allocation_bounded_by_entries_present() {
    // 64 entries present: the only sizeable allocation is the 64-element
    // Vec<MemEntry> (16 bytes each on 64-bit).
    let bytes = attach_bytes(64, 64);

    let (result, largest) = largest_allocation(|| decode(&bytes));

    assert!(result.is_ok());
    assert_eq!(largest, 64 * size_of::<MemEntry>());
}

#[test]
fn test_decode_attach_entries_at_limit_ok() {
    let bytes = attach_bytes(4, 4);

    let result = decode_command(&bytes, &limits(4));

    let entries = match result {
        Ok((_, GpuCommand::ResourceAttachBacking { entries, .. })) => entries,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(entries.len(), 4);
}

#[test]
fn test_decode_attach_entries_one_over_limit_too_many() {
    let bytes = attach_bytes(5, 5);

    let result = decode_command(&bytes, &limits(4));

    assert_eq!(
        result,
        Err(DecodeError::TooManyEntries { count: 5, max: 4 })
    );
}

#[test]
fn test_decode_attach_partial_last_entry_truncated() {
    // Three entries announced, two and a half present.
    let mut bytes = attach_bytes(3, 3);
    bytes.truncate(bytes.len() - 8);

    let result = decode(&bytes);

    assert_eq!(
        result,
        Err(DecodeError::EntriesTruncated {
            count: 3,
            have_bytes: 40
        })
    );
}

#[test]
fn test_decode_attach_more_entries_present_than_announced_extra_ignored() {
    let bytes = attach_bytes(1, 3);

    let cmd = decode_cmd(&bytes);

    assert_eq!(
        cmd,
        GpuCommand::ResourceAttachBacking {
            resource_id: 9,
            entries: vec![MemEntry {
                addr: 0x10_0000,
                length: 0x1000
            }]
        }
    );
}

#[test]
fn test_decode_create_blob_nr_entries_over_limit_too_many() {
    let c = virtio_gpu_resource_create_blob {
        hdr: hdr(VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB),
        nr_entries: 3.into(),
        ..Default::default()
    };
    let mut bytes = c.as_bytes().to_vec();
    bytes.extend_from_slice(&[0u8; 48]);

    let result = decode_command(&bytes, &limits(2));

    assert_eq!(
        result,
        Err(DecodeError::TooManyEntries { count: 3, max: 2 })
    );
}

#[test]
fn test_decode_create_blob_entries_missing_truncated() {
    let c = virtio_gpu_resource_create_blob {
        hdr: hdr(VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB),
        nr_entries: 1.into(),
        ..Default::default()
    };

    let result = decode(c.as_bytes());

    assert_eq!(
        result,
        Err(DecodeError::EntriesTruncated {
            count: 1,
            have_bytes: 0
        })
    );
}

#[test]
fn test_max_command_len_default_fits_create_blob_with_max_entries() {
    let len = max_command_len(&DecodeLimits::default());

    assert_eq!(len, 56 + 16384 * 16);
}

#[test]
fn test_max_command_len_zero_entries_is_largest_fixed_struct() {
    let len = max_command_len(&limits(0));

    assert_eq!(len, size_of::<virtio_gpu_set_scanout_blob>());
}

#[test]
fn test_max_command_len_max_entries_request_decodes() {
    // A CREATE_BLOB with exactly the limit of entries fills max_command_len.
    let max = 8;
    let c = virtio_gpu_resource_create_blob {
        hdr: hdr(VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB),
        nr_entries: max.into(),
        ..Default::default()
    };
    let mut bytes = c.as_bytes().to_vec();
    bytes.resize(max_command_len(&limits(max)), 0);

    let result = decode_command(&bytes, &limits(max));

    assert!(result.is_ok(), "{result:?}");
}

// ---------------------------------------------------------------------------
// Unknown and unsupported types.
// ---------------------------------------------------------------------------

#[test]
fn test_decode_undefined_type_unknown_command() {
    let result = decode(hdr(VIRTIO_GPU_UNDEFINED).as_bytes());

    assert_eq!(result, Err(DecodeError::UnknownCommand { type_: 0 }));
}

#[test]
fn test_decode_type_after_last_2d_command_unknown_command() {
    let result = decode(hdr(0x010e).as_bytes());

    assert_eq!(result, Err(DecodeError::UnknownCommand { type_: 0x010e }));
}

#[test]
fn test_decode_response_type_as_command_unknown_command() {
    let result = decode(hdr(VIRTIO_GPU_RESP_OK_NODATA).as_bytes());

    assert_eq!(
        result,
        Err(DecodeError::UnknownCommand {
            type_: VIRTIO_GPU_RESP_OK_NODATA
        })
    );
}

#[test]
fn test_decode_submit_3d_unsupported() {
    let mut bytes = hdr(VIRTIO_GPU_CMD_SUBMIT_3D).as_bytes().to_vec();
    bytes.extend_from_slice(&[0u8; 64]);

    let result = decode(&bytes);

    assert_eq!(
        result,
        Err(DecodeError::Unsupported {
            type_: VIRTIO_GPU_CMD_SUBMIT_3D
        })
    );
}

#[test]
fn test_decode_every_3d_and_map_blob_type_unsupported() {
    for type_ in VIRTIO_GPU_CMD_CTX_CREATE..=VIRTIO_GPU_CMD_RESOURCE_UNMAP_BLOB {
        let result = decode(hdr(type_).as_bytes());

        assert_eq!(result, Err(DecodeError::Unsupported { type_ }));
    }
}

#[test]
fn test_decode_error_codes_map_to_spec_errors() {
    let too_short = DecodeError::TooShort {
        what: "x",
        need: 2,
        have: 1,
    };
    let unknown = DecodeError::UnknownCommand { type_: 1 };
    let unsupported = DecodeError::Unsupported { type_: 0x0200 };
    let too_many = DecodeError::TooManyEntries { count: 2, max: 1 };
    let truncated = DecodeError::EntriesTruncated {
        count: 2,
        have_bytes: 0,
    };

    assert_eq!(too_short.error_code(), ErrorCode::Unspec);
    assert_eq!(unknown.error_code(), ErrorCode::Unspec);
    assert_eq!(unsupported.error_code(), ErrorCode::Unspec);
    assert_eq!(too_many.error_code(), ErrorCode::InvalidParameter);
    assert_eq!(truncated.error_code(), ErrorCode::InvalidParameter);
}

#[test]
fn test_unsupported_error_message_names_command() {
    let err = DecodeError::Unsupported {
        type_: VIRTIO_GPU_CMD_CTX_CREATE,
    };

    assert_eq!(
        err.to_string(),
        "command VIRTIO_GPU_CMD_CTX_CREATE (0x0200) is not supported"
    );
}

// ---------------------------------------------------------------------------
// Names.
// ---------------------------------------------------------------------------

#[test]
fn test_command_names_match_metrics_contract() {
    let names: Vec<&str> = [
        GpuCommand::GetDisplayInfo,
        GpuCommand::GetEdid { scanout: 0 },
        GpuCommand::ResourceCreate2d {
            resource_id: 0,
            format: 0,
            width: 0,
            height: 0,
        },
        GpuCommand::ResourceUnref { resource_id: 0 },
        GpuCommand::SetScanout {
            scanout_id: 0,
            resource_id: 0,
            rect: Rect::default(),
        },
        GpuCommand::ResourceFlush {
            resource_id: 0,
            rect: Rect::default(),
        },
        GpuCommand::TransferToHost2d {
            resource_id: 0,
            rect: Rect::default(),
            offset: 0,
        },
        GpuCommand::ResourceAttachBacking {
            resource_id: 0,
            entries: vec![],
        },
        GpuCommand::ResourceDetachBacking { resource_id: 0 },
        GpuCommand::GetCapsetInfo { capset_index: 0 },
        GpuCommand::GetCapset {
            capset_id: 0,
            capset_version: 0,
        },
        GpuCommand::ResourceAssignUuid { resource_id: 0 },
        GpuCommand::ResourceCreateBlob {
            resource_id: 0,
            blob_mem: 0,
            blob_flags: 0,
            blob_id: 0,
            size: 0,
            entries: vec![],
        },
        GpuCommand::SetScanoutBlob {
            scanout_id: 0,
            resource_id: 0,
            width: 0,
            height: 0,
            format: 0,
            strides: [0; 4],
            offsets: [0; 4],
            rect: Rect::default(),
        },
        GpuCommand::UpdateCursor {
            pos: CursorPos::default(),
            resource_id: 0,
            hot_x: 0,
            hot_y: 0,
        },
        GpuCommand::MoveCursor {
            pos: CursorPos::default(),
            resource_id: 0,
        },
    ]
    .iter()
    .map(GpuCommand::name)
    .collect();

    // The list from the metrics contract, in its order, minus "unknown".
    assert_eq!(
        names,
        [
            "get_display_info",
            "get_edid",
            "resource_create_2d",
            "resource_unref",
            "set_scanout",
            "resource_flush",
            "transfer_to_host_2d",
            "resource_attach_backing",
            "resource_detach_backing",
            "get_capset_info",
            "get_capset",
            "resource_assign_uuid",
            "resource_create_blob",
            "set_scanout_blob",
            "update_cursor",
            "move_cursor",
        ]
    );
    assert_eq!(&COMMAND_NAMES[..16], names.as_slice());
}

#[test]
fn test_command_name_unsupported_type_is_unknown() {
    assert_eq!(command_name(VIRTIO_GPU_CMD_SUBMIT_3D), "unknown");
    assert_eq!(command_name(0xffff_ffff), "unknown");
}

#[test]
fn test_error_code_names_match_metrics_contract() {
    let names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.name()).collect();

    assert_eq!(
        names,
        [
            "err_unspec",
            "err_out_of_memory",
            "err_invalid_scanout_id",
            "err_invalid_resource_id",
            "err_invalid_context_id",
            "err_invalid_parameter",
        ]
    );
}

#[test]
fn test_error_code_values_are_consecutive_from_0x1200() {
    let values: Vec<u32> = ErrorCode::ALL.iter().map(|c| c.response_type()).collect();

    assert_eq!(values, [0x1200, 0x1201, 0x1202, 0x1203, 0x1204, 0x1205]);
    assert_eq!(
        ErrorCode::from_response_type(0x1203),
        Some(ErrorCode::InvalidResourceId)
    );
    assert_eq!(ErrorCode::from_response_type(0x1100), None);
}

// ---------------------------------------------------------------------------
// Responses.
// ---------------------------------------------------------------------------

fn req(flags: u32, ring_idx: u8) -> CtrlHeader {
    CtrlHeader {
        type_: VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING,
        flags,
        fence_id: FENCE_ID,
        ctx_id: 5,
        ring_idx,
    }
}

fn response_hdr(out: &[u8]) -> virtio_gpu_ctrl_hdr {
    match virtio_gpu_ctrl_hdr::read_from_prefix(out) {
        Ok((h, _)) => h,
        Err(_) => panic!("no header in {} bytes", out.len()),
    }
}

#[test]
fn test_encode_ok_nodata_fenced_echoes_fence_and_ctx() {
    let mut out = [0xaau8; 24];

    let n = GpuResponse::OkNoData
        .encode(&req(VIRTIO_GPU_FLAG_FENCE, 0), &mut out)
        .expect("room");

    let h = response_hdr(&out);
    assert_eq!(n, 24);
    assert_eq!(h.type_.get(), VIRTIO_GPU_RESP_OK_NODATA);
    assert_eq!(h.flags.get(), VIRTIO_GPU_FLAG_FENCE);
    assert_eq!(h.fence_id.get(), FENCE_ID);
    assert_eq!(h.ctx_id.get(), 5);
    assert_eq!(h.ring_idx, 0);
    assert_eq!(h.padding, [0; 3]);
}

#[test]
fn test_encode_unfenced_request_no_fence_in_response() {
    let mut out = [0xaau8; 24];

    GpuResponse::OkNoData
        .encode(&req(0, 3), &mut out)
        .expect("room");

    let h = response_hdr(&out);
    assert_eq!(h.flags.get(), 0);
    assert_eq!(h.fence_id.get(), 0);
    assert_eq!(h.ctx_id.get(), 0);
    assert_eq!(h.ring_idx, 0);
}

#[test]
fn test_encode_ring_idx_request_echoes_ring_idx() {
    let mut out = [0u8; 24];

    GpuResponse::OkNoData
        .encode(
            &req(VIRTIO_GPU_FLAG_FENCE | VIRTIO_GPU_FLAG_INFO_RING_IDX, 3),
            &mut out,
        )
        .expect("room");

    let h = response_hdr(&out);
    assert_eq!(
        h.flags.get(),
        VIRTIO_GPU_FLAG_FENCE | VIRTIO_GPU_FLAG_INFO_RING_IDX
    );
    assert_eq!(h.ring_idx, 3);
    assert_eq!(h.fence_id.get(), FENCE_ID);
}

#[test]
fn test_encode_unknown_request_flags_not_echoed() {
    let mut out = [0u8; 24];

    GpuResponse::OkNoData
        .encode(&req(0xffff_fff0 | VIRTIO_GPU_FLAG_FENCE, 0), &mut out)
        .expect("room");

    assert_eq!(response_hdr(&out).flags.get(), VIRTIO_GPU_FLAG_FENCE);
}

#[test]
fn test_encode_error_response_type_is_error_code() {
    let mut out = [0u8; 24];

    GpuResponse::Err(ErrorCode::InvalidResourceId)
        .encode(&req(0, 0), &mut out)
        .expect("room");

    assert_eq!(
        response_hdr(&out).type_.get(),
        VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID
    );
}

#[test]
fn test_encode_buffer_one_byte_short_too_small_and_untouched() {
    let mut out = [0xaau8; 23];

    let result = GpuResponse::OkNoData.encode(&req(0, 0), &mut out);

    assert_eq!(
        result,
        Err(EncodeError::BufferTooSmall { need: 24, have: 23 })
    );
    assert!(out.iter().all(|&b| b == 0xaa));
}

#[test]
fn test_encode_display_info_too_small_buffer_rejected() {
    let mut out = [0u8; 407];

    let result = GpuResponse::OkDisplayInfo(vec![]).encode(&req(0, 0), &mut out);

    assert_eq!(
        result,
        Err(EncodeError::BufferTooSmall {
            need: 408,
            have: 407
        })
    );
}

#[test]
fn test_encode_display_info_layout() {
    let displays = vec![
        DisplayOne {
            rect: Rect {
                x: 0,
                y: 0,
                width: 1280,
                height: 800,
            },
            enabled: true,
            flags: 0,
        },
        DisplayOne {
            rect: Rect {
                x: 1280,
                y: 0,
                width: 640,
                height: 480,
            },
            enabled: false,
            flags: 0,
        },
    ];
    let mut out = vec![0xaau8; 500];

    let n = GpuResponse::OkDisplayInfo(displays)
        .encode(&req(0, 0), &mut out)
        .expect("room");

    let (resp, _) = virtio_gpu_resp_display_info::read_from_prefix(&out).expect("408 bytes");
    assert_eq!(n, 408);
    assert_eq!(resp.hdr.type_.get(), VIRTIO_GPU_RESP_OK_DISPLAY_INFO);
    assert_eq!(resp.pmodes[0].r.width.get(), 1280);
    assert_eq!(resp.pmodes[0].r.height.get(), 800);
    assert_eq!(resp.pmodes[0].enabled.get(), 1);
    assert_eq!(resp.pmodes[1].r.x.get(), 1280);
    assert_eq!(resp.pmodes[1].enabled.get(), 0);
    assert_eq!(resp.pmodes[2], virtio_gpu_display_one::default());
    assert_eq!(out[408], 0xaa, "nothing written past the response");
}

#[test]
fn test_encode_display_info_17_scanouts_rejected() {
    let mut out = vec![0u8; 408];

    let result =
        GpuResponse::OkDisplayInfo(vec![DisplayOne::default(); 17]).encode(&req(0, 0), &mut out);

    assert_eq!(result, Err(EncodeError::TooManyScanouts { count: 17 }));
}

#[test]
fn test_encode_edid_size_and_bytes() {
    let edid = generate_edid(1280, 800, 60).expect("mode");
    let mut out = vec![0u8; 1056];

    let n = GpuResponse::OkEdid(edid.to_vec())
        .encode(&req(0, 0), &mut out)
        .expect("room");

    let (resp, _) = virtio_gpu_resp_edid::read_from_prefix(&out).expect("1056 bytes");
    assert_eq!(n, 1056);
    assert_eq!(resp.hdr.type_.get(), VIRTIO_GPU_RESP_OK_EDID);
    assert_eq!(resp.size.get(), 128);
    assert_eq!(&resp.edid[..128], &edid[..]);
    assert!(resp.edid[128..].iter().all(|&b| b == 0));
}

#[test]
fn test_encode_edid_over_1024_bytes_rejected() {
    let mut out = vec![0u8; 1056];

    let result = GpuResponse::OkEdid(vec![0; 1025]).encode(&req(0, 0), &mut out);

    assert_eq!(result, Err(EncodeError::EdidTooLarge { len: 1025 }));
}

#[test]
fn test_encode_capset_info_fields() {
    let mut out = [0u8; 40];

    GpuResponse::OkCapsetInfo {
        capset_id: 4,
        max_version: 2,
        max_size: 160,
    }
    .encode(&req(0, 0), &mut out)
    .expect("room");

    let (resp, _) = virtio_gpu_resp_capset_info::read_from_prefix(&out).expect("40 bytes");
    assert_eq!(resp.hdr.type_.get(), VIRTIO_GPU_RESP_OK_CAPSET_INFO);
    assert_eq!(resp.capset_id.get(), 4);
    assert_eq!(resp.capset_max_version.get(), 2);
    assert_eq!(resp.capset_max_size.get(), 160);
}

#[test]
fn test_encode_capset_data_follows_header() {
    let mut out = [0u8; 64];

    let n = GpuResponse::OkCapset(vec![1, 2, 3])
        .encode(&req(0, 0), &mut out)
        .expect("room");

    assert_eq!(n, 27);
    assert_eq!(response_hdr(&out).type_.get(), VIRTIO_GPU_RESP_OK_CAPSET);
    assert_eq!(&out[24..27], &[1, 2, 3]);
}

#[test]
fn test_encode_resource_uuid_bytes() {
    let uuid = [0x11u8; 16];
    let mut out = [0u8; 40];

    GpuResponse::OkResourceUuid(uuid)
        .encode(&req(0, 0), &mut out)
        .expect("room");

    let (resp, _) = virtio_gpu_resp_resource_uuid::read_from_prefix(&out).expect("40 bytes");
    assert_eq!(resp.hdr.type_.get(), VIRTIO_GPU_RESP_OK_RESOURCE_UUID);
    assert_eq!(resp.uuid, uuid);
}

#[test]
fn test_encoded_len_matches_spec_struct_sizes() {
    assert_eq!(GpuResponse::OkNoData.encoded_len(), 24);
    assert_eq!(GpuResponse::Err(ErrorCode::Unspec).encoded_len(), 24);
    assert_eq!(GpuResponse::OkDisplayInfo(vec![]).encoded_len(), 408);
    assert_eq!(GpuResponse::OkEdid(vec![]).encoded_len(), 1056);
    assert_eq!(
        GpuResponse::OkCapsetInfo {
            capset_id: 0,
            max_version: 0,
            max_size: 0
        }
        .encoded_len(),
        40
    );
    assert_eq!(GpuResponse::OkResourceUuid([0; 16]).encoded_len(), 40);
    assert_eq!(GpuResponse::OkCapset(vec![0; 10]).encoded_len(), 34);
}

#[test]
fn test_encode_or_unspec_small_buffer_falls_back_to_err_unspec() {
    let mut out = [0u8; 100];

    let (n, type_) = GpuResponse::OkDisplayInfo(vec![])
        .encode_or_unspec(&req(VIRTIO_GPU_FLAG_FENCE, 0), &mut out)
        .expect("room for a header");

    let h = response_hdr(&out);
    assert_eq!((n, type_), (24, VIRTIO_GPU_RESP_ERR_UNSPEC));
    assert_eq!(h.type_.get(), VIRTIO_GPU_RESP_ERR_UNSPEC);
    assert_eq!(h.fence_id.get(), FENCE_ID);
}

#[test]
fn test_encode_or_unspec_no_room_for_header_fails() {
    let mut out = [0u8; 8];

    let result = GpuResponse::OkNoData.encode_or_unspec(&req(0, 0), &mut out);

    assert_eq!(
        result,
        Err(EncodeError::BufferTooSmall { need: 24, have: 8 })
    );
}

// ---------------------------------------------------------------------------
// Command encoder (used by test harnesses acting as the guest).
// ---------------------------------------------------------------------------

#[test]
fn test_to_bytes_attach_backing_matches_wire_layout() {
    let cmd = GpuCommand::ResourceAttachBacking {
        resource_id: 9,
        entries: vec![MemEntry {
            addr: 0x10_0000,
            length: 0x1000,
        }],
    };

    let bytes = cmd.to_bytes(&CtrlHeader::default());

    assert_eq!(bytes, attach_bytes(1, 1));
}

#[test]
fn test_to_bytes_keeps_fence_of_given_header() {
    let h = req(VIRTIO_GPU_FLAG_FENCE, 0);

    let bytes = GpuCommand::ResourceDetachBacking { resource_id: 1 }.to_bytes(&h);

    let decoded = decode_header(&bytes).expect("header");
    assert_eq!(decoded.fence_id, FENCE_ID);
    assert_eq!(decoded.type_, VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING);
}

// ---------------------------------------------------------------------------
// Config space.
// ---------------------------------------------------------------------------

#[test]
fn test_config_read_whole_space() {
    let cfg = virtio_gpu_config::new(2, 0);

    let bytes = cfg.read_range(0, 16).expect("in range");

    assert_eq!(bytes, &[0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn test_config_read_num_scanouts_field() {
    let cfg = virtio_gpu_config::new(3, 1);

    let bytes = cfg.read_range(8, 4).expect("in range");

    assert_eq!(bytes, &[3, 0, 0, 0]);
}

#[test]
fn test_config_read_past_end_none() {
    let cfg = virtio_gpu_config::new(1, 0);

    assert_eq!(cfg.read_range(12, 8), None);
    assert_eq!(cfg.read_range(16, 1), None);
    assert_eq!(cfg.read_range(u32::MAX, u32::MAX), None);
}

#[test]
fn test_config_new_clamps_num_scanouts() {
    assert_eq!(virtio_gpu_config::new(0, 0).num_scanouts.get(), 1);
    assert_eq!(virtio_gpu_config::new(99, 0).num_scanouts.get(), 16);
}

#[test]
fn test_config_write_events_clear_clears_events_read() {
    let mut cfg = virtio_gpu_config::new(1, 0);
    cfg.events_read = (VIRTIO_GPU_EVENT_DISPLAY | 0x4).into();

    let accepted = cfg.write_range(4, &VIRTIO_GPU_EVENT_DISPLAY.to_le_bytes());

    assert!(accepted);
    assert_eq!(cfg.events_read.get(), 0x4);
    assert_eq!(cfg.events_clear.get(), 0);
}

#[test]
fn test_config_write_read_only_field_rejected() {
    let mut cfg = virtio_gpu_config::new(1, 0);

    let accepted = cfg.write_range(8, &[5, 0, 0, 0]);

    assert!(!accepted);
    assert_eq!(cfg.num_scanouts.get(), 1);
}

#[test]
fn test_config_write_straddling_events_clear_rejected() {
    let mut cfg = virtio_gpu_config::new(1, 0);
    cfg.events_read = 1.into();

    let accepted = cfg.write_range(2, &[0xff; 4]);

    assert!(!accepted);
    assert_eq!(cfg.events_read.get(), 1);
}

// ---------------------------------------------------------------------------
// decode_attach_backing_in_place
// ---------------------------------------------------------------------------

#[test]
fn test_attach_in_place_gives_the_entries_decode_command_copies() {
    let bytes = attach_bytes(2, 2);

    let (hdr, resource_id, entries) =
        decode_attach_backing_in_place(&bytes, &DecodeLimits::default()).expect("decodes");

    let decoded: Vec<MemEntry> = entries
        .iter()
        .map(|e| MemEntry {
            addr: e.addr.get(),
            length: e.length.get(),
        })
        .collect();
    let (expected_hdr, expected) = decode(&bytes).expect("decodes");
    assert_eq!(hdr, expected_hdr);
    assert_eq!(
        GpuCommand::ResourceAttachBacking {
            resource_id,
            entries: decoded
        },
        expected
    );
}

#[test]
fn test_attach_in_place_borrows_the_request_bytes() {
    let bytes = attach_bytes(2, 2);

    let (_, _, entries) =
        decode_attach_backing_in_place(&bytes, &DecodeLimits::default()).expect("decodes");

    let fixed = size_of::<virtio_gpu_resource_attach_backing>();
    assert_eq!(entries.as_bytes().as_ptr(), bytes[fixed..].as_ptr());
}

#[test]
fn test_attach_in_place_partial_last_entry_truncated() {
    let mut bytes = attach_bytes(3, 3);
    bytes.truncate(bytes.len() - 8);

    let result = decode_attach_backing_in_place(&bytes, &DecodeLimits::default());

    assert_eq!(
        result,
        Err(DecodeError::EntriesTruncated {
            count: 3,
            have_bytes: 40
        })
    );
}

#[test]
fn test_attach_in_place_over_limit_is_too_many() {
    let bytes = attach_bytes(3, 3);
    let limits = DecodeLimits {
        max_backing_entries: 2,
    };

    let result = decode_attach_backing_in_place(&bytes, &limits);

    assert_eq!(
        result,
        Err(DecodeError::TooManyEntries { count: 3, max: 2 })
    );
}

#[test]
fn test_attach_in_place_other_command_is_unsupported() {
    let hdr = CtrlHeader {
        type_: VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING,
        ..CtrlHeader::default()
    };
    let bytes = GpuCommand::ResourceDetachBacking { resource_id: 9 }.to_bytes(&hdr);

    let result = decode_attach_backing_in_place(&bytes, &DecodeLimits::default());

    assert_eq!(
        result,
        Err(DecodeError::Unsupported {
            type_: VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING
        })
    );
}
