//! Tests of [`GpuState`]: every transition of the backing state machine and
//! every bad input, against real anonymous guest memory.

use vm_memory::{Bytes, GuestAddress, GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};

use super::*;
use crate::proto::ErrorCode;

const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;
/// `VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM`.
const FORMAT: u32 = 1;
/// 64x64 pixels of 4 bytes = 16 KiB = four pages.
const SIDE: u32 = 64;
const SIDE_BYTES: u64 = (SIDE * SIDE * 4) as u64;
/// Two guest areas, far apart, for "attach at A, later at B".
const AREA_A: u64 = 0x10_0000;
const AREA_B: u64 = 0x80_0000;

type Mem = GuestMemoryAtomic<GuestMemoryMmap<()>>;

fn anonymous_memory(size: u64) -> GuestMemoryMmap<()> {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size as usize)]).expect("guest memory")
}

fn config() -> GpuStateConfig {
    GpuStateConfig {
        num_scanouts: 2,
        max_host_memory: 64 * MIB,
        max_backing_entries: 16384,
        display_width: 1280,
        display_height: 800,
    }
}

fn new_state() -> (GpuState, Mem) {
    let mem = GuestMemoryAtomic::new(anonymous_memory(64 * MIB));
    let state = GpuState::new(config(), mem.clone()).expect("state");
    (state, mem)
}

/// One 4 KiB entry per page of `[addr, addr + len)`, as a guest sends them.
fn page_entries(addr: u64, len: u64) -> Vec<MemEntry> {
    (0..len.div_ceil(PAGE))
        .map(|i| MemEntry {
            addr: addr + i * PAGE,
            length: PAGE as u32,
        })
        .collect()
}

/// Distinct bytes for every offset, different per `seed`.
fn pattern(seed: u8, len: u64) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

fn write_guest(mem: &Mem, addr: u64, data: &[u8]) {
    mem.memory()
        .write_slice(data, GuestAddress(addr))
        .expect("guest write");
}

fn read_guest(mem: &Mem, addr: u64, len: u64) -> Vec<u8> {
    let mut buf = vec![0u8; len as usize];
    mem.memory()
        .read_slice(&mut buf, GuestAddress(addr))
        .expect("guest read");
    buf
}

fn full(width: u32, height: u32) -> Rect {
    Rect {
        x: 0,
        y: 0,
        width,
        height,
    }
}

/// Creates a 64x64 2D resource `id` backed by page entries at `addr`.
fn attached_2d(state: &mut GpuState, id: u32, addr: u64) {
    state.create_2d(id, FORMAT, SIDE, SIDE).expect("create");
    state
        .attach_backing(id, &page_entries(addr, SIDE_BYTES))
        .expect("attach");
}

fn read_all(state: &mut GpuState, id: u32) -> Vec<u8> {
    let mut out = Vec::new();
    state
        .read_pixels(id, full(SIDE, SIDE), &mut out)
        .expect("read pixels");
    out
}

fn code(err: &ResourceError) -> ErrorCode {
    err.error_code()
}

// ---------------------------------------------------------------- new

#[test]
fn test_new_zero_scanouts_is_invalid_config() {
    let mem = GuestMemoryAtomic::new(anonymous_memory(MIB));
    let cfg = GpuStateConfig {
        num_scanouts: 0,
        ..config()
    };

    let err = GpuState::new(cfg, mem).expect_err("no scanouts");

    assert!(matches!(err, ResourceError::InvalidConfig(_)));
}

#[test]
fn test_new_seventeen_scanouts_is_invalid_config() {
    let mem = GuestMemoryAtomic::new(anonymous_memory(MIB));
    let cfg = GpuStateConfig {
        num_scanouts: MAX_SCANOUTS + 1,
        ..config()
    };

    let err = GpuState::new(cfg, mem).expect_err("too many scanouts");

    assert!(matches!(err, ResourceError::InvalidConfig(_)));
}

// ---------------------------------------------------------------- create_2d

#[test]
fn test_create_2d_valid_has_no_backing_and_counts_host_memory() {
    let (mut state, _mem) = new_state();

    state.create_2d(1, FORMAT, SIDE, SIDE).expect("create");

    assert_eq!(state.resource_count(), 1);
    assert!(!state.has_backing(1));
    assert_eq!(state.host_memory_used(), SIDE_BYTES);
}

#[test]
fn test_create_2d_id_zero_is_invalid_resource_id() {
    let (mut state, _mem) = new_state();

    let err = state.create_2d(0, FORMAT, SIDE, SIDE).expect_err("id 0");

    assert_eq!(code(&err), ErrorCode::InvalidResourceId);
    assert_eq!(state.resource_count(), 0);
}

#[test]
fn test_create_2d_duplicate_id_is_invalid_resource_id_and_keeps_original() {
    let (mut state, _mem) = new_state();
    state.create_2d(1, FORMAT, SIDE, SIDE).expect("create");

    let err = state.create_2d(1, FORMAT, 128, 128).expect_err("duplicate");

    assert_eq!(code(&err), ErrorCode::InvalidResourceId);
    assert_eq!(
        state.resource_kind(1),
        Some(ResourceKind::TwoD {
            format: FORMAT,
            width: SIDE,
            height: SIDE
        })
    );
    assert_eq!(state.host_memory_used(), SIDE_BYTES);
}

#[test]
fn test_create_2d_zero_width_is_invalid_parameter() {
    let (mut state, _mem) = new_state();

    let err = state.create_2d(1, FORMAT, 0, SIDE).expect_err("zero width");

    assert_eq!(code(&err), ErrorCode::InvalidParameter);
}

#[test]
fn test_create_2d_zero_height_is_invalid_parameter() {
    let (mut state, _mem) = new_state();

    let err = state
        .create_2d(1, FORMAT, SIDE, 0)
        .expect_err("zero height");

    assert_eq!(code(&err), ErrorCode::InvalidParameter);
}

#[test]
fn test_create_2d_width_above_limit_is_invalid_parameter() {
    let (mut state, _mem) = new_state();

    let err = state
        .create_2d(1, FORMAT, MAX_RESOURCE_DIMENSION + 1, 1)
        .expect_err("too wide");

    assert_eq!(code(&err), ErrorCode::InvalidParameter);
}

#[test]
fn test_create_2d_huge_dimensions_are_invalid_parameter_without_allocating() {
    let (mut state, _mem) = new_state();

    let err = state
        .create_2d(1, FORMAT, u32::MAX, u32::MAX)
        .expect_err("huge");

    assert_eq!(code(&err), ErrorCode::InvalidParameter);
    assert_eq!(state.host_memory_used(), 0);
}

#[test]
fn test_create_2d_unknown_format_is_invalid_parameter() {
    let (mut state, _mem) = new_state();

    // 5 is between the BGRA/ARGB formats (1-4) and RGBA (67).
    let err = state.create_2d(1, 5, SIDE, SIDE).expect_err("format");

    assert_eq!(code(&err), ErrorCode::InvalidParameter);
}

#[test]
fn test_create_2d_beyond_host_memory_is_out_of_memory() {
    let (mut state, _mem) = new_state();
    // 4096 x 4096 x 4 = 64 MiB fills the limit exactly.
    state
        .create_2d(1, FORMAT, 4096, 4096)
        .expect("fits exactly");

    let err = state.create_2d(2, FORMAT, 1, 1).expect_err("over limit");

    assert_eq!(code(&err), ErrorCode::OutOfMemory);
    assert_eq!(state.resource_count(), 1);
    assert_eq!(state.host_memory_used(), 64 * MIB);
}

// ---------------------------------------------------------------- create_blob

#[test]
fn test_create_blob_without_entries_has_no_backing() {
    let (mut state, _mem) = new_state();

    let attached = state
        .create_blob(1, VIRTIO_GPU_BLOB_MEM_GUEST, 0, 0, SIDE_BYTES, &[])
        .expect("blob");

    assert_eq!(attached, 0);
    assert!(!state.has_backing(1));
    assert_eq!(state.host_memory_used(), 0);
}

#[test]
fn test_create_blob_with_entries_is_attached_and_coalesced() {
    let (mut state, _mem) = new_state();

    let attached = state
        .create_blob(
            1,
            VIRTIO_GPU_BLOB_MEM_GUEST,
            0,
            0,
            SIDE_BYTES,
            &page_entries(AREA_A, SIDE_BYTES),
        )
        .expect("blob");

    assert_eq!(attached, SIDE_BYTES);
    assert_eq!(state.attached_bytes(), SIDE_BYTES);
    assert_eq!(
        state.backing_ranges(1),
        Some(
            &[GuestRange {
                addr: AREA_A,
                len: SIDE_BYTES
            }][..]
        )
    );
}

#[test]
fn test_create_blob_host_memory_type_is_invalid_parameter() {
    let (mut state, _mem) = new_state();

    // VIRTIO_GPU_BLOB_MEM_HOST3D = 2.
    let err = state
        .create_blob(1, 2, 0, 0, SIDE_BYTES, &[])
        .expect_err("host3d");

    assert_eq!(code(&err), ErrorCode::InvalidParameter);
    assert_eq!(state.resource_count(), 0);
}

#[test]
fn test_create_blob_zero_size_is_invalid_parameter() {
    let (mut state, _mem) = new_state();

    let err = state
        .create_blob(1, VIRTIO_GPU_BLOB_MEM_GUEST, 0, 0, 0, &[])
        .expect_err("size 0");

    assert_eq!(code(&err), ErrorCode::InvalidParameter);
}

#[test]
fn test_create_blob_unknown_flag_is_invalid_parameter() {
    let (mut state, _mem) = new_state();

    let err = state
        .create_blob(1, VIRTIO_GPU_BLOB_MEM_GUEST, 0x8, 0, SIDE_BYTES, &[])
        .expect_err("flag 0x8");

    assert_eq!(code(&err), ErrorCode::InvalidParameter);
}

#[test]
fn test_create_blob_entries_short_of_size_is_invalid_parameter_and_not_created() {
    let (mut state, _mem) = new_state();

    let err = state
        .create_blob(
            1,
            VIRTIO_GPU_BLOB_MEM_GUEST,
            0,
            0,
            SIDE_BYTES,
            &page_entries(AREA_A, SIDE_BYTES - PAGE),
        )
        .expect_err("short");

    assert_eq!(code(&err), ErrorCode::InvalidParameter);
    assert_eq!(state.resource_count(), 0);
    assert_eq!(state.attached_bytes(), 0);
}

#[test]
fn test_create_blob_duplicate_id_is_invalid_resource_id() {
    let (mut state, _mem) = new_state();
    state.create_2d(1, FORMAT, SIDE, SIDE).expect("create");

    let err = state
        .create_blob(1, VIRTIO_GPU_BLOB_MEM_GUEST, 0, 0, SIDE_BYTES, &[])
        .expect_err("duplicate");

    assert_eq!(code(&err), ErrorCode::InvalidResourceId);
}

// ---------------------------------------------------------------- unref

#[test]
fn test_unref_unknown_is_invalid_resource_id() {
    let (mut state, _mem) = new_state();

    let err = state.unref(9).expect_err("unknown");

    assert_eq!(code(&err), ErrorCode::InvalidResourceId);
}

#[test]
fn test_unref_attached_returns_bytes_and_releases_everything() {
    let (mut state, _mem) = new_state();
    attached_2d(&mut state, 1, AREA_A);

    let released = state.unref(1).expect("unref");

    assert_eq!(released, SIDE_BYTES);
    assert_eq!(state.resource_count(), 0);
    assert_eq!(state.attached_bytes(), 0);
    assert_eq!(state.host_memory_used(), 0);
}

#[test]
fn test_unref_id_can_be_created_again() {
    let (mut state, _mem) = new_state();
    attached_2d(&mut state, 1, AREA_A);
    state.unref(1).expect("unref");

    let result = state.create_2d(1, FORMAT, SIDE, SIDE);

    assert!(result.is_ok());
    assert!(!state.has_backing(1));
}

#[test]
fn test_unref_on_scanout_is_unspec_and_keeps_resource() {
    let (mut state, _mem) = new_state();
    attached_2d(&mut state, 1, AREA_A);
    state.set_scanout(1, 1, full(SIDE, SIDE)).expect("scanout");

    let err = state.unref(1).expect_err("on scanout");

    assert!(matches!(
        err,
        ResourceError::ResourceInUse { scanout_id: 1, .. }
    ));
    assert_eq!(code(&err), ErrorCode::Unspec);
    assert!(state.has_backing(1));
    assert_eq!(state.scanout_resource(1), Some(1));
}

#[test]
fn test_unref_after_scanout_disabled_succeeds() {
    let (mut state, _mem) = new_state();
    attached_2d(&mut state, 1, AREA_A);
    state.set_scanout(0, 1, full(SIDE, SIDE)).expect("scanout");
    state.set_scanout(0, 0, Rect::default()).expect("disable");

    let result = state.unref(1);

    assert!(result.is_ok());
}

#[test]
fn test_unref_cursor_resource_succeeds_and_clears_cursor() {
    let (mut state, _mem) = new_state();
    attached_2d(&mut state, 1, AREA_A);
    state.update_cursor(1, 0, 0).expect("cursor");

    let result = state.unref(1);

    assert!(result.is_ok());
    assert_eq!(state.cursor_state().0, 0);
}

// ---------------------------------------------------------------- attach_backing

#[test]
fn test_attach_backing_valid_attaches_and_counts_bytes() {
    let (mut state, _mem) = new_state();
    state.create_2d(1, FORMAT, SIDE, SIDE).expect("create");

    let attached = state
        .attach_backing(1, &page_entries(AREA_A, SIDE_BYTES))
        .expect("attach");

    assert_eq!(attached, SIDE_BYTES);
    assert!(state.has_backing(1));
    assert_eq!(state.attached_bytes(), SIDE_BYTES);
}

#[test]
fn test_attach_backing_unknown_id_is_invalid_resource_id() {
    let (mut state, _mem) = new_state();

    let err = state
        .attach_backing(3, &page_entries(AREA_A, PAGE))
        .expect_err("unknown");

    assert_eq!(code(&err), ErrorCode::InvalidResourceId);
}

#[test]
fn test_attach_backing_twice_is_unspec_and_keeps_first_backing() {
    let (mut state, _mem) = new_state();
    attached_2d(&mut state, 1, AREA_A);

    let err = state
        .attach_backing(1, &page_entries(AREA_B, SIDE_BYTES))
        .expect_err("already attached");

    assert_eq!(code(&err), ErrorCode::Unspec);
    assert_eq!(state.backing_ranges(1).expect("ranges")[0].addr, AREA_A);
    assert_eq!(state.attached_bytes(), SIDE_BYTES);
}

#[test]
fn test_attach_backing_zero_entries_is_invalid_parameter() {
    let (mut state, _mem) = new_state();
    state.create_2d(1, FORMAT, SIDE, SIDE).expect("create");

    let err = state.attach_backing(1, &[]).expect_err("no entries");

    assert_eq!(code(&err), ErrorCode::InvalidParameter);
    assert!(!state.has_backing(1));
}

#[test]
fn test_attach_backing_more_than_max_entries_is_invalid_parameter() {
    let (mut state, _mem) = new_state();
    state.create_2d(1, FORMAT, SIDE, SIDE).expect("create");
    // 16385 pages: one more than max_backing_entries.
    let entries = page_entries(AREA_A, 16385 * PAGE);

    let err = state.attach_backing(1, &entries).expect_err("too many");

    assert_eq!(code(&err), ErrorCode::InvalidParameter);
    assert!(!state.has_backing(1));
}

#[test]
fn test_attach_backing_zero_length_entry_is_invalid_parameter() {
    let (mut state, _mem) = new_state();
    state.create_2d(1, FORMAT, SIDE, SIDE).expect("create");
    let mut entries = page_entries(AREA_A, SIDE_BYTES);
    entries.push(MemEntry {
        addr: AREA_B,
        length: 0,
    });

    let err = state.attach_backing(1, &entries).expect_err("zero length");

    assert_eq!(code(&err), ErrorCode::InvalidParameter);
    assert!(!state.has_backing(1));
}

#[test]
fn test_attach_backing_overflowing_entry_is_invalid_parameter() {
    let (mut state, _mem) = new_state();
    state.create_2d(1, FORMAT, SIDE, SIDE).expect("create");
    let entries = [MemEntry {
        addr: u64::MAX - PAGE + 1,
        length: u32::MAX,
    }];

    let err = state.attach_backing(1, &entries).expect_err("overflow");

    assert_eq!(code(&err), ErrorCode::InvalidParameter);
}

#[test]
fn test_attach_backing_entry_outside_guest_memory_is_invalid_parameter() {
    let (mut state, _mem) = new_state();
    state.create_2d(1, FORMAT, SIDE, SIDE).expect("create");
    // Guest memory ends at 64 MiB.
    let entries = page_entries(64 * MIB, SIDE_BYTES);

    let err = state.attach_backing(1, &entries).expect_err("outside");

    assert_eq!(code(&err), ErrorCode::InvalidParameter);
    assert!(!state.has_backing(1));
    assert_eq!(state.attached_bytes(), 0);
}

#[test]
fn test_attach_backing_too_small_for_2d_is_invalid_parameter() {
    let (mut state, _mem) = new_state();
    state.create_2d(1, FORMAT, SIDE, SIDE).expect("create");

    let err = state
        .attach_backing(1, &page_entries(AREA_A, SIDE_BYTES - PAGE))
        .expect_err("too small");

    assert!(matches!(err, ResourceError::BackingTooSmall { .. }));
    assert_eq!(code(&err), ErrorCode::InvalidParameter);
    assert!(!state.has_backing(1));
}

#[test]
fn test_attach_backing_too_small_for_blob_is_invalid_parameter() {
    let (mut state, _mem) = new_state();
    state
        .create_blob(1, VIRTIO_GPU_BLOB_MEM_GUEST, 0, 0, SIDE_BYTES, &[])
        .expect("blob");

    let err = state
        .attach_backing(1, &page_entries(AREA_A, PAGE))
        .expect_err("too small");

    assert_eq!(code(&err), ErrorCode::InvalidParameter);
    assert!(!state.has_backing(1));
}

#[test]
fn test_attach_backing_16384_adjacent_pages_coalesce_into_one_range() {
    let (mut state, _mem) = new_state();
    // 64 MiB blob made of 16384 contiguous 4 KiB entries starting at 0.
    state
        .create_blob(1, VIRTIO_GPU_BLOB_MEM_GUEST, 0, 0, 64 * MIB, &[])
        .expect("blob");

    let attached = state
        .attach_backing(1, &page_entries(0, 64 * MIB))
        .expect("attach");

    assert_eq!(attached, 64 * MIB);
    assert_eq!(
        state.backing_ranges(1),
        Some(
            &[GuestRange {
                addr: 0,
                len: 64 * MIB
            }][..]
        )
    );
}

#[test]
fn test_attach_backing_2d_spanning_two_regions_transfers_across_boundary() {
    // Two adjacent 1 MiB regions; the backing straddles the boundary.
    let mem: Mem = GuestMemoryAtomic::new(
        GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), MIB as usize),
            (GuestAddress(MIB), MIB as usize),
        ])
        .expect("guest memory"),
    );
    let mut state = GpuState::new(config(), mem.clone()).expect("state");
    let start = MIB - 2 * PAGE;
    let content = pattern(3, SIDE_BYTES);
    write_guest(&mem, start, &content);
    attached_2d(&mut state, 1, start);

    state
        .transfer_to_host_2d(1, full(SIDE, SIDE), 0)
        .expect("transfer");

    assert_eq!(state.backing_ranges(1).expect("ranges").len(), 1);
    assert_eq!(read_all(&mut state, 1), content);
}

// ---------------------------------------------------------------- detach_backing

#[test]
fn test_detach_backing_attached_returns_bytes_and_has_no_backing() {
    let (mut state, _mem) = new_state();
    attached_2d(&mut state, 1, AREA_A);

    let detached = state.detach_backing(1).expect("detach");

    assert_eq!(detached, SIDE_BYTES);
    assert!(!state.has_backing(1));
    assert_eq!(state.backing_ranges(1), None);
    assert_eq!(state.attached_bytes(), 0);
}

#[test]
fn test_detach_backing_unknown_id_is_invalid_resource_id() {
    let (mut state, _mem) = new_state();

    let err = state.detach_backing(4).expect_err("unknown");

    assert_eq!(code(&err), ErrorCode::InvalidResourceId);
}

#[test]
fn test_detach_backing_without_backing_is_unspec() {
    let (mut state, _mem) = new_state();
    state.create_2d(1, FORMAT, SIDE, SIDE).expect("create");

    let err = state.detach_backing(1).expect_err("no backing");

    assert_eq!(code(&err), ErrorCode::Unspec);
    assert!(!err.is_refused_access());
}

#[test]
fn test_detach_backing_then_attach_again_succeeds() {
    let (mut state, _mem) = new_state();
    attached_2d(&mut state, 1, AREA_A);
    state.detach_backing(1).expect("detach");

    let attached = state
        .attach_backing(1, &page_entries(AREA_B, SIDE_BYTES))
        .expect("re-attach");

    assert_eq!(attached, SIDE_BYTES);
    assert_eq!(state.backing_ranges(1).expect("ranges")[0].addr, AREA_B);
}

#[test]
fn test_detach_backing_blob_on_scanout_refuses_later_reads() {
    let (mut state, mem) = new_state();
    write_guest(&mem, AREA_A, &pattern(1, SIDE_BYTES));
    state
        .create_blob(
            1,
            VIRTIO_GPU_BLOB_MEM_GUEST,
            0,
            0,
            SIDE_BYTES,
            &page_entries(AREA_A, SIDE_BYTES),
        )
        .expect("blob");
    state
        .set_scanout_blob(
            0,
            1,
            SIDE,
            SIDE,
            FORMAT,
            [SIDE * 4, 0, 0, 0],
            [0; 4],
            full(SIDE, SIDE),
        )
        .expect("scanout blob");
    state.detach_backing(1).expect("detach");
    let mut out = Vec::new();

    let err = state
        .read_pixels(1, full(SIDE, SIDE), &mut out)
        .expect_err("no backing");

    assert!(err.is_refused_access());
    assert!(out.is_empty());
}

// ---------------------------------------------------------------- lifecycle

#[test]
fn test_content_survives_detach_and_reattach_at_other_address_until_next_transfer() {
    let (mut state, mem) = new_state();
    let original = pattern(1, SIDE_BYTES);
    let replacement = pattern(2, SIDE_BYTES);
    write_guest(&mem, AREA_A, &original);
    write_guest(&mem, AREA_B, &replacement);
    attached_2d(&mut state, 1, AREA_A);
    state
        .transfer_to_host_2d(1, full(SIDE, SIDE), 0)
        .expect("first transfer");
    state.detach_backing(1).expect("detach");
    state
        .attach_backing(1, &page_entries(AREA_B, SIDE_BYTES))
        .expect("re-attach at B");

    let before = read_all(&mut state, 1);
    state
        .transfer_to_host_2d(1, full(SIDE, SIDE), 0)
        .expect("second transfer");
    let after = read_all(&mut state, 1);

    assert_eq!(before, original);
    assert_eq!(after, replacement);
}

#[test]
fn test_content_survives_detach_while_shown_on_scanout() {
    let (mut state, mem) = new_state();
    let original = pattern(5, SIDE_BYTES);
    write_guest(&mem, AREA_A, &original);
    attached_2d(&mut state, 1, AREA_A);
    state
        .transfer_to_host_2d(1, full(SIDE, SIDE), 0)
        .expect("transfer");
    state.set_scanout(0, 1, full(SIDE, SIDE)).expect("scanout");
    state.detach_backing(1).expect("detach");

    let updates = state.flush(1, full(SIDE, SIDE)).expect("flush");
    let pixels = read_all(&mut state, 1);

    assert_eq!(updates.len(), 1);
    assert_eq!(pixels, original);
}

// ---------------------------------------------------------------- transfer_to_host_2d

#[test]
fn test_transfer_without_backing_is_refused_and_touches_nothing() {
    let (mut state, mem) = new_state();
    let guest = pattern(9, SIDE_BYTES);
    write_guest(&mem, AREA_A, &guest);
    state.create_2d(1, FORMAT, SIDE, SIDE).expect("create");

    let err = state
        .transfer_to_host_2d(1, full(SIDE, SIDE), 0)
        .expect_err("no backing");

    assert!(matches!(err, ResourceError::NoBacking { .. }));
    assert_eq!(err.error_code(), ErrorCode::Unspec);
    assert!(err.is_refused_access());
    assert_eq!(read_all(&mut state, 1), vec![0u8; SIDE_BYTES as usize]);
    assert_eq!(read_guest(&mem, AREA_A, SIDE_BYTES), guest);
}

#[test]
fn test_transfer_after_detach_is_refused_and_keeps_old_content() {
    let (mut state, mem) = new_state();
    let original = pattern(1, SIDE_BYTES);
    write_guest(&mem, AREA_A, &original);
    attached_2d(&mut state, 1, AREA_A);
    state
        .transfer_to_host_2d(1, full(SIDE, SIDE), 0)
        .expect("transfer");
    state.detach_backing(1).expect("detach");
    write_guest(&mem, AREA_A, &pattern(2, SIDE_BYTES));

    let err = state
        .transfer_to_host_2d(1, full(SIDE, SIDE), 0)
        .expect_err("detached");

    assert!(err.is_refused_access());
    assert_eq!(read_all(&mut state, 1), original);
}

#[test]
fn test_transfer_unknown_id_is_invalid_resource_id() {
    let (mut state, _mem) = new_state();

    let err = state
        .transfer_to_host_2d(8, full(SIDE, SIDE), 0)
        .expect_err("unknown");

    assert_eq!(code(&err), ErrorCode::InvalidResourceId);
}

#[test]
fn test_transfer_rect_outside_resource_is_invalid_parameter() {
    let (mut state, _mem) = new_state();
    attached_2d(&mut state, 1, AREA_A);
    let rect = Rect {
        x: 1,
        y: 0,
        width: SIDE,
        height: SIDE,
    };

    let err = state.transfer_to_host_2d(1, rect, 0).expect_err("outside");

    assert_eq!(code(&err), ErrorCode::InvalidParameter);
    assert!(!err.is_refused_access());
}

#[test]
fn test_transfer_rect_overflowing_u32_is_invalid_parameter() {
    let (mut state, _mem) = new_state();
    attached_2d(&mut state, 1, AREA_A);
    let rect = Rect {
        x: u32::MAX,
        y: 0,
        width: 2,
        height: 1,
    };

    let err = state.transfer_to_host_2d(1, rect, 0).expect_err("overflow");

    assert_eq!(code(&err), ErrorCode::InvalidParameter);
}

#[test]
fn test_transfer_source_past_backing_end_is_refused_invalid_parameter() {
    let (mut state, mem) = new_state();
    attached_2d(&mut state, 1, AREA_A);
    // The page after the backing holds data that must never be read.
    write_guest(&mem, AREA_A + SIDE_BYTES, &[0xAB; PAGE as usize]);

    // Full rect from offset 4: ends 4 bytes past the 16 KiB backing.
    let err = state
        .transfer_to_host_2d(1, full(SIDE, SIDE), 4)
        .expect_err("past end");

    assert!(matches!(err, ResourceError::OutsideBacking { .. }));
    assert_eq!(err.error_code(), ErrorCode::InvalidParameter);
    assert!(err.is_refused_access());
    assert!(read_all(&mut state, 1).iter().all(|&b| b == 0));
}

#[test]
fn test_transfer_huge_offset_is_refused_invalid_parameter() {
    let (mut state, _mem) = new_state();
    attached_2d(&mut state, 1, AREA_A);

    let err = state
        .transfer_to_host_2d(1, full(SIDE, SIDE), u64::MAX - 8)
        .expect_err("huge offset");

    assert_eq!(code(&err), ErrorCode::InvalidParameter);
}

#[test]
fn test_transfer_offset_below_rect_position_is_invalid_parameter() {
    let (mut state, _mem) = new_state();
    attached_2d(&mut state, 1, AREA_A);
    let rect = Rect {
        x: 0,
        y: 1,
        width: SIDE,
        height: 1,
    };

    // Row 1 starts at byte 256 of the backing; offset 0 cannot express it.
    let err = state.transfer_to_host_2d(1, rect, 0).expect_err("offset");

    assert!(matches!(err, ResourceError::TransferOffset { .. }));
    assert_eq!(code(&err), ErrorCode::InvalidParameter);
    assert!(!err.is_refused_access());
}

#[test]
fn test_transfer_partial_rect_with_linux_offset_copies_only_that_rect() {
    let (mut state, mem) = new_state();
    let content = pattern(4, SIDE_BYTES);
    write_guest(&mem, AREA_A, &content);
    attached_2d(&mut state, 1, AREA_A);
    let stride = u64::from(SIDE) * 4;
    let rect = Rect {
        x: 2,
        y: 3,
        width: 5,
        height: 7,
    };
    // Linux: offset = x * cpp + y * pitch.
    let offset = 2 * 4 + 3 * stride;

    state
        .transfer_to_host_2d(1, rect, offset)
        .expect("transfer");

    let mut expected = vec![0u8; SIDE_BYTES as usize];
    for row in 3..10u64 {
        let start = (row * stride + 8) as usize;
        expected[start..start + 20].copy_from_slice(&content[start..start + 20]);
    }
    assert_eq!(read_all(&mut state, 1), expected);
}

#[test]
fn test_transfer_blob_with_backing_is_noop_ok() {
    let (mut state, _mem) = new_state();
    state
        .create_blob(
            1,
            VIRTIO_GPU_BLOB_MEM_GUEST,
            0,
            0,
            SIDE_BYTES,
            &page_entries(AREA_A, SIDE_BYTES),
        )
        .expect("blob");

    let result = state.transfer_to_host_2d(1, full(SIDE, SIDE), 0);

    assert!(result.is_ok());
}

#[test]
fn test_transfer_blob_without_backing_is_refused() {
    let (mut state, _mem) = new_state();
    state
        .create_blob(1, VIRTIO_GPU_BLOB_MEM_GUEST, 0, 0, SIDE_BYTES, &[])
        .expect("blob");

    let err = state
        .transfer_to_host_2d(1, full(SIDE, SIDE), 0)
        .expect_err("no backing");

    assert!(err.is_refused_access());
}

// ---------------------------------------------------------------- memory updates

#[test]
fn test_refresh_memory_unchanged_returns_false() {
    let (mut state, _mem) = new_state();
    attached_2d(&mut state, 1, AREA_A);

    let changed = state.refresh_memory().expect("refresh");

    assert!(!changed);
}

#[test]
fn test_refresh_memory_after_update_transfer_reads_new_mapping() {
    let (mut state, mem) = new_state();
    write_guest(&mem, AREA_A, &pattern(1, SIDE_BYTES));
    attached_2d(&mut state, 1, AREA_A);
    // A new mapping of the same guest-physical layout with other content.
    let replacement = pattern(7, SIDE_BYTES);
    let new_map = anonymous_memory(64 * MIB);
    new_map
        .write_slice(&replacement, GuestAddress(AREA_A))
        .expect("write new map");
    mem.lock().expect("lock").replace(new_map);

    let changed = state.refresh_memory().expect("refresh");
    state
        .transfer_to_host_2d(1, full(SIDE, SIDE), 0)
        .expect("transfer");

    assert!(changed);
    assert!(state.has_backing(1));
    assert_eq!(read_all(&mut state, 1), replacement);
}

#[test]
fn test_transfer_after_memory_update_without_explicit_refresh_reads_new_mapping() {
    let (mut state, mem) = new_state();
    write_guest(&mem, AREA_A, &pattern(1, SIDE_BYTES));
    attached_2d(&mut state, 1, AREA_A);
    let replacement = pattern(8, SIDE_BYTES);
    let new_map = anonymous_memory(64 * MIB);
    new_map
        .write_slice(&replacement, GuestAddress(AREA_A))
        .expect("write new map");
    mem.lock().expect("lock").replace(new_map);

    state
        .transfer_to_host_2d(1, full(SIDE, SIDE), 0)
        .expect("transfer");

    assert_eq!(read_all(&mut state, 1), replacement);
}

#[test]
fn test_refresh_memory_range_gone_drops_backing_and_counts_it() {
    let (mut state, mem) = new_state();
    attached_2d(&mut state, 1, AREA_B);
    // The new memory ends at 4 MiB, below AREA_B (8 MiB).
    mem.lock().expect("lock").replace(anonymous_memory(4 * MIB));

    let changed = state.refresh_memory().expect("refresh");
    let err = state
        .transfer_to_host_2d(1, full(SIDE, SIDE), 0)
        .expect_err("backing dropped");

    assert!(changed);
    assert!(!state.has_backing(1));
    assert_eq!(state.attached_bytes(), 0);
    assert_eq!(state.dropped_backings_total(), 1);
    assert!(err.is_refused_access());
}

#[test]
fn test_refresh_memory_keeps_backing_still_inside() {
    let (mut state, mem) = new_state();
    attached_2d(&mut state, 1, AREA_A);
    attached_2d(&mut state, 2, AREA_B);
    mem.lock().expect("lock").replace(anonymous_memory(4 * MIB));

    state.refresh_memory().expect("refresh");

    assert!(state.has_backing(1));
    assert!(!state.has_backing(2));
    assert_eq!(state.attached_bytes(), SIDE_BYTES);
}

// ---------------------------------------------------------------- scanouts

#[test]
fn test_set_scanout_valid_reports_scanout_geometry() {
    let (mut state, _mem) = new_state();
    state.create_2d(1, FORMAT, SIDE, SIDE).expect("create");
    let rect = Rect {
        x: 8,
        y: 4,
        width: 32,
        height: 16,
    };

    let update = state.set_scanout(1, 1, rect).expect("scanout");

    assert_eq!(
        update,
        ScanoutUpdate {
            scanout_id: 1,
            resource_id: 1,
            width: 32,
            height: 16,
            format: FORMAT,
            src: rect,
            dst_x: 0,
            dst_y: 0,
        }
    );
    assert_eq!(state.scanout_resource(1), Some(1));
}

#[test]
fn test_set_scanout_invalid_scanout_id_is_invalid_scanout_id() {
    let (mut state, _mem) = new_state();
    state.create_2d(1, FORMAT, SIDE, SIDE).expect("create");

    let err = state
        .set_scanout(2, 1, full(SIDE, SIDE))
        .expect_err("scanout 2 of 2");

    assert_eq!(code(&err), ErrorCode::InvalidScanoutId);
}

#[test]
fn test_set_scanout_resource_zero_disables() {
    let (mut state, _mem) = new_state();
    state.create_2d(1, FORMAT, SIDE, SIDE).expect("create");
    state.set_scanout(0, 1, full(SIDE, SIDE)).expect("scanout");

    let update = state.set_scanout(0, 0, Rect::default()).expect("disable");

    assert_eq!(update.resource_id, 0);
    assert_eq!(state.scanout_resource(0), None);
}

#[test]
fn test_set_scanout_unknown_resource_is_invalid_resource_id() {
    let (mut state, _mem) = new_state();

    let err = state
        .set_scanout(0, 5, full(SIDE, SIDE))
        .expect_err("unknown");

    assert_eq!(code(&err), ErrorCode::InvalidResourceId);
    assert_eq!(state.scanout_resource(0), None);
}

#[test]
fn test_set_scanout_rect_outside_resource_is_invalid_parameter() {
    let (mut state, _mem) = new_state();
    state.create_2d(1, FORMAT, SIDE, SIDE).expect("create");

    let err = state
        .set_scanout(0, 1, full(SIDE + 1, SIDE))
        .expect_err("outside");

    assert_eq!(code(&err), ErrorCode::InvalidParameter);
}

#[test]
fn test_set_scanout_with_blob_is_invalid_parameter() {
    let (mut state, _mem) = new_state();
    state
        .create_blob(1, VIRTIO_GPU_BLOB_MEM_GUEST, 0, 0, SIDE_BYTES, &[])
        .expect("blob");

    let err = state.set_scanout(0, 1, full(SIDE, SIDE)).expect_err("blob");

    assert_eq!(code(&err), ErrorCode::InvalidParameter);
}

#[test]
fn test_set_scanout_blob_without_backing_succeeds_but_read_is_refused() {
    let (mut state, _mem) = new_state();
    state
        .create_blob(1, VIRTIO_GPU_BLOB_MEM_GUEST, 0, 0, SIDE_BYTES, &[])
        .expect("blob");
    state
        .set_scanout_blob(
            0,
            1,
            SIDE,
            SIDE,
            FORMAT,
            [SIDE * 4, 0, 0, 0],
            [0; 4],
            full(SIDE, SIDE),
        )
        .expect("scanout blob");
    let mut out = Vec::new();

    let err = state
        .read_pixels(1, full(SIDE, SIDE), &mut out)
        .expect_err("no backing");

    assert!(matches!(err, ResourceError::NoBacking { .. }));
    assert!(err.is_refused_access());
}

#[test]
fn test_set_scanout_blob_image_past_blob_end_is_invalid_parameter() {
    let (mut state, _mem) = new_state();
    state
        .create_blob(1, VIRTIO_GPU_BLOB_MEM_GUEST, 0, 0, SIDE_BYTES, &[])
        .expect("blob");

    // Offset 4 pushes the last pixel 4 bytes past the 16 KiB blob.
    let err = state
        .set_scanout_blob(
            0,
            1,
            SIDE,
            SIDE,
            FORMAT,
            [SIDE * 4, 0, 0, 0],
            [4, 0, 0, 0],
            full(SIDE, SIDE),
        )
        .expect_err("past end");

    assert_eq!(code(&err), ErrorCode::InvalidParameter);
    assert_eq!(state.scanout_resource(0), None);
}

#[test]
fn test_set_scanout_blob_stride_below_row_is_invalid_parameter() {
    let (mut state, _mem) = new_state();
    state
        .create_blob(1, VIRTIO_GPU_BLOB_MEM_GUEST, 0, 0, SIDE_BYTES, &[])
        .expect("blob");

    let err = state
        .set_scanout_blob(
            0,
            1,
            SIDE,
            SIDE,
            FORMAT,
            [SIDE * 4 - 4, 0, 0, 0],
            [0; 4],
            full(SIDE, SIDE),
        )
        .expect_err("stride");

    assert_eq!(code(&err), ErrorCode::InvalidParameter);
}

#[test]
fn test_set_scanout_blob_with_2d_resource_is_invalid_parameter() {
    let (mut state, _mem) = new_state();
    state.create_2d(1, FORMAT, SIDE, SIDE).expect("create");

    let err = state
        .set_scanout_blob(
            0,
            1,
            SIDE,
            SIDE,
            FORMAT,
            [SIDE * 4, 0, 0, 0],
            [0; 4],
            full(SIDE, SIDE),
        )
        .expect_err("2d");

    assert_eq!(code(&err), ErrorCode::InvalidParameter);
}

// ---------------------------------------------------------------- flush and read_pixels

#[test]
fn test_flush_lists_intersection_on_each_showing_scanout() {
    let (mut state, _mem) = new_state();
    state.create_2d(1, FORMAT, SIDE, SIDE).expect("create");
    // Scanout 1 shows the right half of the resource.
    let shown = Rect {
        x: 32,
        y: 0,
        width: 32,
        height: SIDE,
    };
    state.set_scanout(1, 1, shown).expect("scanout");
    let damage = Rect {
        x: 16,
        y: 10,
        width: 32,
        height: 4,
    };

    let updates = state.flush(1, damage).expect("flush");

    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].scanout_id, 1);
    assert_eq!(
        updates[0].src,
        Rect {
            x: 32,
            y: 10,
            width: 16,
            height: 4
        }
    );
    assert_eq!((updates[0].dst_x, updates[0].dst_y), (0, 10));
}

#[test]
fn test_flush_resource_not_shown_lists_nothing() {
    let (mut state, _mem) = new_state();
    state.create_2d(1, FORMAT, SIDE, SIDE).expect("create");

    let updates = state.flush(1, full(SIDE, SIDE)).expect("flush");

    assert!(updates.is_empty());
}

#[test]
fn test_flush_rect_outside_resource_is_invalid_parameter() {
    let (mut state, _mem) = new_state();
    state.create_2d(1, FORMAT, SIDE, SIDE).expect("create");

    let err = state.flush(1, full(SIDE, SIDE + 1)).expect_err("outside");

    assert_eq!(code(&err), ErrorCode::InvalidParameter);
}

#[test]
fn test_flush_shown_blob_without_backing_is_refused() {
    let (mut state, _mem) = new_state();
    state
        .create_blob(1, VIRTIO_GPU_BLOB_MEM_GUEST, 0, 0, SIDE_BYTES, &[])
        .expect("blob");
    state
        .set_scanout_blob(
            0,
            1,
            SIDE,
            SIDE,
            FORMAT,
            [SIDE * 4, 0, 0, 0],
            [0; 4],
            full(SIDE, SIDE),
        )
        .expect("scanout blob");

    let err = state.flush(1, full(SIDE, SIDE)).expect_err("no backing");

    assert!(err.is_refused_access());
}

#[test]
fn test_transfer_full_width_band_over_scattered_pages_copies_those_rows() {
    let (mut state, mem) = new_state();
    state.create_2d(1, FORMAT, SIDE, SIDE).expect("create");
    // Every other page from AREA_A: the backing is 4 discontiguous ranges.
    let entries: Vec<MemEntry> = (0..SIDE_BYTES / PAGE)
        .map(|i| MemEntry {
            addr: AREA_A + 2 * i * PAGE,
            length: PAGE as u32,
        })
        .collect();
    let content = pattern(9, SIDE_BYTES);
    for (i, chunk) in content.chunks(PAGE as usize).enumerate() {
        write_guest(&mem, AREA_A + 2 * i as u64 * PAGE, chunk);
    }
    state.attach_backing(1, &entries).expect("attach");
    let stride = u64::from(SIDE) * 4;
    // Rows 10..30: one block of 20 rows crossing two page boundaries.
    let rect = Rect {
        x: 0,
        y: 10,
        width: SIDE,
        height: 20,
    };

    state
        .transfer_to_host_2d(1, rect, 10 * stride)
        .expect("transfer");

    let mut expected = vec![0u8; SIDE_BYTES as usize];
    let (from, to) = ((10 * stride) as usize, (30 * stride) as usize);
    expected[from..to].copy_from_slice(&content[from..to]);
    assert_eq!(read_all(&mut state, 1), expected);
}

#[test]
fn test_read_pixels_band_below_row_0_overwrites_stale_output() {
    let (mut state, mem) = new_state();
    let content = pattern(7, SIDE_BYTES);
    write_guest(&mem, AREA_A, &content);
    attached_2d(&mut state, 1, AREA_A);
    state
        .transfer_to_host_2d(1, full(SIDE, SIDE), 0)
        .expect("transfer");
    let rect = Rect {
        x: 0,
        y: 40,
        width: SIDE,
        height: 3,
    };
    let mut out = vec![0xee; 5 * SIDE_BYTES as usize];

    state.read_pixels(1, rect, &mut out).expect("read");

    let stride = SIDE as usize * 4;
    assert_eq!(out, &content[40 * stride..43 * stride]);
}

#[test]
fn test_host_rows_full_width_band_is_the_read_pixels_bytes() {
    let (mut state, mem) = new_state();
    let content = pattern(8, SIDE_BYTES);
    write_guest(&mem, AREA_A, &content);
    attached_2d(&mut state, 1, AREA_A);
    state
        .transfer_to_host_2d(1, full(SIDE, SIDE), 0)
        .expect("transfer");
    let band = Rect {
        x: 0,
        y: 20,
        width: SIDE,
        height: 10,
    };
    let mut copied = Vec::new();
    state.read_pixels(1, band, &mut copied).expect("read");

    let rows = state.host_rows(1, band).expect("full-width band");

    assert_eq!(rows.bytes, &copied[..]);
    // A small copy lives on the heap, never sent by reference.
    assert!(!rows.own_mapping);
}

#[test]
fn test_host_rows_of_a_large_resource_come_from_its_own_mapping() {
    let (mut state, _mem) = new_state();
    state
        .create_2d(7, FORMAT, 1024, 512)
        .expect("2 MiB resource");

    let rows = state
        .host_rows(7, full(1024, 512))
        .expect("full-width band");

    assert!(rows.own_mapping);
    assert_eq!(rows.bytes.len(), 1024 * 512 * 4);
    assert!(rows.bytes.iter().all(|&b| b == 0));
}

#[test]
fn test_host_rows_narrow_or_outside_rect_is_none() {
    let (mut state, _mem) = new_state();
    attached_2d(&mut state, 1, AREA_A);
    let narrow = Rect {
        x: 1,
        y: 0,
        width: SIDE - 1,
        height: 1,
    };
    let outside = Rect {
        x: 0,
        y: SIDE - 1,
        width: SIDE,
        height: 2,
    };

    assert!(state.host_rows(1, narrow).is_none());
    assert!(state.host_rows(1, outside).is_none());
    assert!(state.host_rows(2, full(SIDE, SIDE)).is_none());
}

#[test]
fn test_read_pixels_2d_sub_rect_is_tightly_packed() {
    let (mut state, mem) = new_state();
    let content = pattern(6, SIDE_BYTES);
    write_guest(&mem, AREA_A, &content);
    attached_2d(&mut state, 1, AREA_A);
    state
        .transfer_to_host_2d(1, full(SIDE, SIDE), 0)
        .expect("transfer");
    let rect = Rect {
        x: 3,
        y: 5,
        width: 2,
        height: 2,
    };
    let mut out = Vec::new();

    state.read_pixels(1, rect, &mut out).expect("read");

    let stride = SIDE as usize * 4;
    let row5 = 5 * stride + 12;
    let row6 = 6 * stride + 12;
    let expected = [&content[row5..row5 + 8], &content[row6..row6 + 8]].concat();
    assert_eq!(out, expected);
}

#[test]
fn test_read_pixels_blob_follows_layout_over_discontiguous_backing() {
    let (mut state, mem) = new_state();
    // 2 pages of blob: page 0 at AREA_B, page 1 at AREA_A (reverse order).
    let content = pattern(11, 2 * PAGE);
    write_guest(&mem, AREA_B, &content[..PAGE as usize]);
    write_guest(&mem, AREA_A, &content[PAGE as usize..]);
    let entries = [
        MemEntry {
            addr: AREA_B,
            length: PAGE as u32,
        },
        MemEntry {
            addr: AREA_A,
            length: PAGE as u32,
        },
    ];
    state
        .create_blob(1, VIRTIO_GPU_BLOB_MEM_GUEST, 0, 0, 2 * PAGE, &entries)
        .expect("blob");
    // 16x16 image, rows 400 bytes apart from offset 100: rows cross the page.
    state
        .set_scanout_blob(
            0,
            1,
            16,
            16,
            FORMAT,
            [400, 0, 0, 0],
            [100, 0, 0, 0],
            full(16, 16),
        )
        .expect("scanout blob");
    let rect = Rect {
        x: 1,
        y: 10,
        width: 3,
        height: 2,
    };
    let mut out = Vec::new();

    state.read_pixels(1, rect, &mut out).expect("read");

    let row10 = 100 + 10 * 400 + 4;
    let row11 = 100 + 11 * 400 + 4;
    let expected = [&content[row10..row10 + 12], &content[row11..row11 + 12]].concat();
    assert_eq!(out, expected);
}

#[test]
fn test_read_pixels_blob_never_shown_is_invalid_parameter() {
    let (mut state, _mem) = new_state();
    state
        .create_blob(
            1,
            VIRTIO_GPU_BLOB_MEM_GUEST,
            0,
            0,
            SIDE_BYTES,
            &page_entries(AREA_A, SIDE_BYTES),
        )
        .expect("blob");
    let mut out = Vec::new();

    let err = state
        .read_pixels(1, full(SIDE, SIDE), &mut out)
        .expect_err("no layout");

    assert_eq!(code(&err), ErrorCode::InvalidParameter);
}

// ---------------------------------------------------------------- cursor

#[test]
fn test_update_cursor_2d_returns_64x64_image() {
    let (mut state, mem) = new_state();
    let content = pattern(12, SIDE_BYTES);
    write_guest(&mem, AREA_A, &content);
    attached_2d(&mut state, 1, AREA_A);
    state
        .transfer_to_host_2d(1, full(SIDE, SIDE), 0)
        .expect("transfer");

    let image = state
        .update_cursor(1, 3, 4)
        .expect("cursor")
        .expect("image");

    assert_eq!((image.width, image.height), (CURSOR_WIDTH, CURSOR_HEIGHT));
    assert_eq!((image.hot_x, image.hot_y), (3, 4));
    assert_eq!(image.pixels, content);
}

#[test]
fn test_update_cursor_zero_hides() {
    let (mut state, _mem) = new_state();

    let image = state.update_cursor(0, 0, 0).expect("hide");

    assert_eq!(image, None);
}

#[test]
fn test_update_cursor_wrong_size_is_invalid_parameter() {
    let (mut state, _mem) = new_state();
    state.create_2d(1, FORMAT, 32, 32).expect("create");

    let err = state.update_cursor(1, 0, 0).expect_err("32x32");

    assert_eq!(code(&err), ErrorCode::InvalidParameter);
}

#[test]
fn test_update_cursor_unknown_is_invalid_resource_id() {
    let (mut state, _mem) = new_state();

    let err = state.update_cursor(7, 0, 0).expect_err("unknown");

    assert_eq!(code(&err), ErrorCode::InvalidResourceId);
}

#[test]
fn test_update_cursor_blob_reads_guest_memory() {
    let (mut state, mem) = new_state();
    let content = pattern(13, SIDE_BYTES);
    write_guest(&mem, AREA_A, &content);
    state
        .create_blob(
            1,
            VIRTIO_GPU_BLOB_MEM_GUEST,
            0,
            0,
            SIDE_BYTES,
            &page_entries(AREA_A, SIDE_BYTES),
        )
        .expect("blob");

    let image = state
        .update_cursor(1, 0, 0)
        .expect("cursor")
        .expect("image");

    assert_eq!(image.pixels, content);
}

#[test]
fn test_update_cursor_blob_without_backing_is_refused() {
    let (mut state, _mem) = new_state();
    state
        .create_blob(1, VIRTIO_GPU_BLOB_MEM_GUEST, 0, 0, SIDE_BYTES, &[])
        .expect("blob");

    let err = state.update_cursor(1, 0, 0).expect_err("no backing");

    assert!(err.is_refused_access());
}

#[test]
fn test_move_cursor_invalid_scanout_is_invalid_scanout_id() {
    let (mut state, _mem) = new_state();

    let err = state.move_cursor(5, 10, 10).expect_err("scanout 5");

    assert_eq!(code(&err), ErrorCode::InvalidScanoutId);
}

#[test]
fn test_move_cursor_records_position() {
    let (mut state, _mem) = new_state();

    state.move_cursor(1, 10, 20).expect("move");

    assert_eq!(state.cursor_state(), (0, 1, 10, 20));
}

// ---------------------------------------------------------------- uuid and reset

#[test]
fn test_assign_uuid_is_stable_per_resource() {
    let (mut state, _mem) = new_state();
    state.create_2d(1, FORMAT, SIDE, SIDE).expect("create");

    let first = state.assign_uuid(1).expect("uuid");
    let second = state.assign_uuid(1).expect("uuid again");

    assert_eq!(first, second);
}

#[test]
fn test_assign_uuid_differs_for_reused_id() {
    let (mut state, _mem) = new_state();
    state.create_2d(1, FORMAT, SIDE, SIDE).expect("create");
    let first = state.assign_uuid(1).expect("uuid");
    state.unref(1).expect("unref");
    state
        .create_2d(1, FORMAT, SIDE, SIDE)
        .expect("create again");

    let second = state.assign_uuid(1).expect("uuid");

    assert_ne!(first, second);
}

#[test]
fn test_assign_uuid_unknown_is_invalid_resource_id() {
    let (mut state, _mem) = new_state();

    let err = state.assign_uuid(1).expect_err("unknown");

    assert_eq!(code(&err), ErrorCode::InvalidResourceId);
}

#[test]
fn test_reset_drops_resources_scanouts_and_backing() {
    let (mut state, _mem) = new_state();
    attached_2d(&mut state, 1, AREA_A);
    state.set_scanout(0, 1, full(SIDE, SIDE)).expect("scanout");
    state.update_cursor(1, 0, 0).expect("cursor");

    state.reset().expect("reset");

    assert_eq!(state.resource_count(), 0);
    assert_eq!(state.attached_bytes(), 0);
    assert_eq!(state.host_memory_used(), 0);
    assert_eq!(state.scanout_resource(0), None);
    assert_eq!(state.cursor_state().0, 0);
}

#[test]
fn test_reset_then_same_id_starts_with_empty_content() {
    let (mut state, mem) = new_state();
    write_guest(&mem, AREA_A, &pattern(1, SIDE_BYTES));
    attached_2d(&mut state, 1, AREA_A);
    state
        .transfer_to_host_2d(1, full(SIDE, SIDE), 0)
        .expect("transfer");
    state.reset().expect("reset");

    state
        .create_2d(1, FORMAT, SIDE, SIDE)
        .expect("create after reset");

    assert_eq!(read_all(&mut state, 1), vec![0u8; SIDE_BYTES as usize]);
}

// ---------------------------------------------------------------- host references
//
// The state keeps no host pointer into guest memory: host addresses are
// derived from the backing's guest ranges for each access. So "no host
// reference after DETACH" is "no ranges after DETACH".

/// True if the state holds any record of guest pages for `id`.
fn holds_backing(state: &GpuState, id: u32) -> bool {
    state.backing_ranges(id).is_some() || state.has_backing(id)
}

#[test]
fn test_host_refs_attach_backing_records_ranges() {
    let (mut state, _mem) = new_state();

    attached_2d(&mut state, 1, AREA_A);

    assert!(holds_backing(&state, 1));
}

#[test]
fn test_host_refs_detach_backing_leaves_none() {
    let (mut state, _mem) = new_state();
    attached_2d(&mut state, 1, AREA_A);

    state.detach_backing(1).expect("detach");

    assert!(!holds_backing(&state, 1));
}

#[test]
fn test_host_refs_memory_update_dropping_range_leaves_none() {
    let (mut state, mem) = new_state();
    attached_2d(&mut state, 1, AREA_B);
    mem.lock().expect("lock").replace(anonymous_memory(4 * MIB));

    state.refresh_memory().expect("refresh");

    assert!(!holds_backing(&state, 1));
}

#[test]
fn test_host_refs_unref_leaves_none() {
    let (mut state, _mem) = new_state();
    attached_2d(&mut state, 1, AREA_A);

    state.unref(1).expect("unref");

    assert!(!holds_backing(&state, 1));
}

#[test]
fn test_host_refs_reset_leaves_none() {
    let (mut state, _mem) = new_state();
    attached_2d(&mut state, 1, AREA_A);

    state.reset().expect("reset");

    assert!(!holds_backing(&state, 1));
}

#[test]
fn test_host_refs_failed_attach_leaves_none() {
    let (mut state, _mem) = new_state();
    state.create_2d(1, FORMAT, SIDE, SIDE).expect("create");

    let result = state.attach_backing(1, &page_entries(64 * MIB - PAGE, SIDE_BYTES));

    assert!(result.is_err());
    assert!(!holds_backing(&state, 1));
}

// ---------------------------------------------------------------- random sequences

/// xorshift64*: a deterministic pseudo-random source for the sequence test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Mostly small values, sometimes extreme ones.
    fn guest_u32(&mut self, small: u64) -> u32 {
        match self.below(10) {
            0 => u32::MAX,
            1 => 0,
            _ => self.below(small) as u32,
        }
    }
}

/// Recomputes the accounting from the public accessors.
fn recount(state: &GpuState, max_id: u32) -> (u64, u64) {
    let attached = (1..=max_id)
        .filter_map(|id| state.backing_ranges(id))
        .flat_map(|ranges| ranges.iter().map(|r| r.len))
        .sum();
    let host = (1..=max_id)
        .filter_map(|id| state.resource_kind(id))
        .map(|kind| match kind {
            ResourceKind::TwoD { width, height, .. } => u64::from(width) * u64::from(height) * 4,
            ResourceKind::GuestBlob { .. } => 0,
        })
        .sum();
    (attached, host)
}

/// Drives 20,000 random, often invalid, commands (and memory table updates)
/// through the state: nothing may panic and the byte accounting must always
/// match the resources that exist.
#[test]
fn test_random_command_sequences_keep_accounting_consistent() {
    const MAX_ID: u32 = 12;
    let (mut state, mem) = new_state();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::new();
    let mut successes = [0u32; 16];

    for step in 0..20_000u32 {
        let id = rng.below(u64::from(MAX_ID) + 1) as u32;
        let rect = Rect {
            x: rng.guest_u32(80),
            y: rng.guest_u32(80),
            width: rng.guest_u32(80),
            height: rng.guest_u32(80),
        };
        let addr = match rng.below(8) {
            0 => u64::MAX - rng.below(2 * PAGE),
            1 => 64 * MIB - rng.below(4 * PAGE),
            _ => rng.below(32) * 16 * PAGE,
        };
        let entries: Vec<MemEntry> = (0..rng.below(40))
            .map(|i| MemEntry {
                addr: addr.wrapping_add(i * PAGE),
                length: if rng.below(30) == 0 { 0 } else { PAGE as u32 },
            })
            .collect();
        let op = rng.below(16) as usize;
        let result = match op {
            0 => state
                .create_2d(id, FORMAT, rng.guest_u32(100), rng.guest_u32(100))
                .map(|()| 0),
            1 => state.create_blob(
                id,
                VIRTIO_GPU_BLOB_MEM_GUEST,
                0,
                0,
                rng.below(40 * PAGE),
                &entries,
            ),
            2 => state.unref(id),
            3 | 4 => state.attach_backing(id, &entries),
            5 | 6 => state.detach_backing(id),
            7 => state
                .transfer_to_host_2d(id, rect, rng.below(SIDE_BYTES))
                .map(|()| 0),
            8 => state.set_scanout(rng.below(3) as u32, id, rect).map(|_| 0),
            9 => state
                .set_scanout_blob(
                    rng.below(3) as u32,
                    id,
                    rng.guest_u32(80),
                    rng.guest_u32(80),
                    FORMAT,
                    [rng.guest_u32(400), 0, 0, 0],
                    [rng.guest_u32(PAGE), 0, 0, 0],
                    rect,
                )
                .map(|_| 0),
            10 => state.flush(id, rect).map(|_| 0),
            11 => state.read_pixels(id, rect, &mut out).map(|()| 0),
            12 => state.update_cursor(id, 0, 0).map(|_| 0),
            13 => state.assign_uuid(id).map(|_| 0),
            14 => {
                let size = [4 * MIB, 16 * MIB, 64 * MIB][rng.below(3) as usize];
                mem.lock().expect("lock").replace(anonymous_memory(size));
                state.refresh_memory().map(|_| 0)
            }
            _ => {
                if rng.below(50) == 0 {
                    state.reset().map(|()| 0)
                } else {
                    state.move_cursor(rng.below(3) as u32, 1, 1).map(|()| 0)
                }
            }
        };

        if result.is_ok() {
            successes[op] += 1;
        }
        let (attached, host) = recount(&state, MAX_ID);
        assert_eq!(state.attached_bytes(), attached, "attached at step {step}");
        assert_eq!(state.host_memory_used(), host, "host memory at step {step}");
    }
    // The sequence must reach the interesting transitions, not only errors:
    // creates (0, 1), attach (3, 4), detach (5, 6), transfer (7), reads (11).
    eprintln!("successes per operation: {successes:?}");
    assert!([0, 1, 3, 5, 7, 11].iter().all(|&op| successes[op] >= 10));
}

// ---------------------------------------------------------------- more memory updates

#[test]
fn test_refresh_memory_new_region_split_inside_backing_still_transfers() {
    let (mut state, mem) = new_state();
    attached_2d(&mut state, 1, AREA_A);
    // Same guest-physical space, now two regions split in the middle of the
    // backing: host addresses must be split there too.
    let split = AREA_A + 2 * PAGE;
    let new_map = GuestMemoryMmap::from_ranges(&[
        (GuestAddress(0), split as usize),
        (GuestAddress(split), (64 * MIB - split) as usize),
    ])
    .expect("guest memory");
    let content = pattern(21, SIDE_BYTES);
    new_map
        .write_slice(&content, GuestAddress(AREA_A))
        .expect("write across the split");
    mem.lock().expect("lock").replace(new_map);

    state.refresh_memory().expect("refresh");
    state
        .transfer_to_host_2d(1, full(SIDE, SIDE), 0)
        .expect("transfer");

    assert!(state.has_backing(1));
    assert_eq!(read_all(&mut state, 1), content);
}

#[test]
fn test_refresh_memory_blob_range_gone_drops_backing() {
    let (mut state, mem) = new_state();
    state
        .create_blob(
            1,
            VIRTIO_GPU_BLOB_MEM_GUEST,
            0,
            0,
            SIDE_BYTES,
            &page_entries(AREA_B, SIDE_BYTES),
        )
        .expect("blob");
    mem.lock().expect("lock").replace(anonymous_memory(4 * MIB));

    state.refresh_memory().expect("refresh");

    assert!(!state.has_backing(1));
    assert_eq!(state.attached_bytes(), 0);
    assert_eq!(state.dropped_backings_total(), 1);
}

#[test]
fn test_attach_backing_after_memory_update_validates_against_new_memory() {
    let (mut state, mem) = new_state();
    state.create_2d(1, FORMAT, SIDE, SIDE).expect("create");
    mem.lock().expect("lock").replace(anonymous_memory(4 * MIB));

    // AREA_B (8 MiB) was guest memory before the update, not after.
    let err = state
        .attach_backing(1, &page_entries(AREA_B, SIDE_BYTES))
        .expect_err("outside new memory");

    assert_eq!(code(&err), ErrorCode::InvalidParameter);
    assert!(!state.has_backing(1));
}

#[test]
fn test_large_transfer_shared_with_the_copy_helper_copies_every_byte() {
    // 1024x768 = 3 MiB, above the two-thread threshold, over scattered
    // pages (every other page from AREA_B), so chunks cross many ranges.
    let (mut state, mem) = new_state();
    let (w, h) = (1024u32, 768u32);
    let bytes = u64::from(w * h * 4);
    let entries: Vec<MemEntry> = (0..bytes / PAGE)
        .map(|i| MemEntry {
            addr: AREA_B + 2 * i * PAGE,
            length: PAGE as u32,
        })
        .collect();
    state.create_2d(9, FORMAT, w, h).expect("create");
    state.attach_backing(9, &entries).expect("attach");
    for round in 0..20u64 {
        // No period shorter than the copy (`pattern` repeats every 64 KiB).
        let content: Vec<u8> = (0..bytes)
            .map(|i| ((i + round).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8)
            .collect();
        for (i, page) in content.chunks(PAGE as usize).enumerate() {
            write_guest(&mem, AREA_B + 2 * i as u64 * PAGE, page);
        }

        state
            .transfer_to_host_2d(9, full(w, h), 0)
            .expect("transfer");

        let mut out = Vec::new();
        state.read_pixels(9, full(w, h), &mut out).expect("read");
        assert!(out == content, "round {round}: host copy differs");
    }
}
