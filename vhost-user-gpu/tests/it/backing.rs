//! The backing lifecycle contract (DESIGN 4.2) observed from the VMM side:
//! content survives detach and re-attach elsewhere, detached pages are
//! never touched again, memory-table updates re-derive host pointers, and
//! a device reset drops every resource.

use crate::common::wire::{self, Rect};
use crate::common::{
    entry, page_entries, pattern, DisplayMsg, TestVmm, VmmOptions, DATA_BASE, HIGH_BASE, PAGE,
};
use vm_memory::{Bytes, GuestAddress};

/// A 64x32 BGRA resource is exactly two 4 KiB pages.
const W: u32 = 64;
const H: u32 = 32;
const BYTES: usize = (W * H * 4) as usize;
/// First backing location (two pages) and a second, disjoint one.
const SITE_A: u64 = DATA_BASE;
const SITE_B: u64 = DATA_BASE + 0x10_0000;
const FULL: Rect = Rect::new(0, 0, W, H);

fn start() -> TestVmm {
    TestVmm::start(&[])
}

/// Flushes resource 1 (shown on scanout 0) and returns the pixels of the
/// UPDATE that flush produced.
fn flush_and_capture(vmm: &mut TestVmm) -> Vec<u8> {
    flush_and_capture_id(vmm, 1)
}

/// Flushes resource `id` (shown on scanout 0) and returns its UPDATE pixels.
fn flush_and_capture_id(vmm: &mut TestVmm, id: u32) -> Vec<u8> {
    let from = vmm.display_mark();
    vmm.ok(&wire::resource_flush(id, FULL));
    let display = vmm.display.as_ref().expect("display");
    let (_, msg) = display.wait_for(from, |m| matches!(m, DisplayMsg::Update { .. }));
    let DisplayMsg::Update { data, .. } = msg else {
        unreachable!()
    };
    data
}

/// Creates resource 1 backed at SITE_A holding `content`, uploads it and
/// puts it on scanout 0.
fn create_uploaded(vmm: &mut TestVmm, content: &[u8]) {
    vmm.write_guest(SITE_A, content);
    vmm.create_backed_2d(1, W, H, &page_entries(SITE_A, 2));
    vmm.ok(&wire::transfer_to_host_2d(1, FULL, 0));
    vmm.ok(&wire::set_scanout(0, 1, FULL));
}

#[test]
fn test_backing_reattached_at_other_pages_keeps_content() {
    let mut vmm = start();
    let content = pattern(1, BYTES);
    create_uploaded(&mut vmm, &content);
    let before = flush_and_capture(&mut vmm);
    vmm.ok(&wire::with_fence(wire::detach_backing(1), 1, 0));
    vmm.write_guest(SITE_A, &vec![0xee; BYTES]);
    vmm.write_guest(SITE_B, &vec![0x00; BYTES]);

    // Re-attach elsewhere, pages in reverse order, no new transfer.
    let attach = vmm.ctrl_type(&wire::attach_backing(
        1,
        &[
            entry(SITE_B + PAGE, PAGE as u32),
            entry(SITE_B, PAGE as u32),
        ],
    ));
    let after = flush_and_capture(&mut vmm);

    assert_eq!(before, content);
    assert_eq!(attach, wire::RESP_OK_NODATA);
    assert_eq!(after, content, "content changed across detach/re-attach");
}

#[test]
fn test_backing_reattached_then_transferred_reads_new_pages() {
    let mut vmm = start();
    create_uploaded(&mut vmm, &pattern(1, BYTES));
    vmm.ok(&wire::detach_backing(1));
    let fresh = pattern(2, BYTES);
    vmm.write_guest(SITE_B, &fresh);
    vmm.ok(&wire::attach_backing(1, &page_entries(SITE_B, 2)));

    vmm.ok(&wire::transfer_to_host_2d(1, FULL, 0));
    let shown = flush_and_capture(&mut vmm);

    assert_eq!(shown, fresh);
}

#[test]
fn test_transfer_after_detach_fails_without_reading_old_pages() {
    let mut vmm = start();
    let content = pattern(1, BYTES);
    create_uploaded(&mut vmm, &content);
    vmm.ok(&wire::detach_backing(1));
    // The guest reuses the pages for something else.
    let reused = pattern(9, BYTES);
    vmm.write_guest(SITE_A, &reused);
    let refused_before = vmm.metric("vugpu_refused_guest_accesses_total");

    let resp = vmm.ctrl(&wire::transfer_to_host_2d(1, FULL, 0));
    let shown = flush_and_capture(&mut vmm);

    assert_eq!(resp.type_(), wire::RESP_ERR_UNSPEC);
    assert_eq!(shown, content, "detached pages were read");
    assert_eq!(
        vmm.read_guest(SITE_A, BYTES),
        reused,
        "detached pages were written"
    );
    assert_eq!(
        vmm.metric("vugpu_refused_guest_accesses_total"),
        refused_before + 1.0
    );
}

#[test]
fn test_detach_fenced_completes_before_later_commands() {
    let mut vmm = start();
    create_uploaded(&mut vmm, &pattern(1, BYTES));

    // Queue a fenced DETACH and a TRANSFER back to back, kick once: the
    // transfer must see the resource without backing.
    let detach = wire::with_fence(wire::detach_backing(1), 42, 0);
    let transfer = wire::transfer_to_host_2d(1, FULL, 0);
    vmm.write_guest(0x1_0000, &detach);
    vmm.write_guest(0x2_0000, &transfer);
    let d = |addr: u64, len: usize, write: bool| crate::common::Desc {
        addr,
        len: len as u32,
        write,
    };
    vmm.push_chain(
        crate::common::CTRL_Q,
        &[d(0x1_0000, detach.len(), false), d(0x8_0000, 24, true)],
    );
    vmm.push_chain(
        crate::common::CTRL_Q,
        &[d(0x2_0000, transfer.len(), false), d(0x9_0000, 24, true)],
    );
    vmm.kick(crate::common::CTRL_Q);
    let first = vmm.wait_used(crate::common::CTRL_Q);
    let second = vmm.wait_used(crate::common::CTRL_Q);

    assert_eq!((first.1, second.1), (24, 24));
    let detach_resp = vmm.read_guest(0x8_0000, 24);
    let transfer_resp = vmm.read_guest(0x9_0000, 24);
    assert_eq!(wire::le32(&detach_resp, 0), wire::RESP_OK_NODATA);
    assert_eq!(wire::le64(&detach_resp, 8), 42);
    assert_eq!(wire::le32(&transfer_resp, 0), wire::RESP_ERR_UNSPEC);
}

#[test]
fn test_memory_table_update_attached_resource_reads_new_mapping() {
    let mut vmm = start();
    create_uploaded(&mut vmm, &pattern(1, BYTES));

    let old = vmm.remap(false);
    let fresh = pattern(5, BYTES);
    vmm.write_guest(SITE_A, &fresh);
    old.write_slice(&vec![0xdd; BYTES], GuestAddress(SITE_A))
        .expect("scribble old mapping");
    let resp = vmm.ctrl(&wire::transfer_to_host_2d(1, FULL, 0));
    let shown = flush_and_capture(&mut vmm);

    assert_eq!(resp.type_(), wire::RESP_OK_NODATA);
    assert_eq!(shown, fresh, "transfer did not read the new mapping");
}

#[test]
fn test_memory_table_update_added_region_serves_new_backing() {
    let mut vmm = start();
    vmm.ok(&wire::resource_create_2d(
        1,
        wire::FORMAT_B8G8R8A8_UNORM,
        W,
        H,
    ));
    vmm.ok(&wire::set_scanout(0, 1, FULL));

    vmm.remap(true);
    let content = pattern(6, BYTES);
    vmm.write_guest(HIGH_BASE, &content);
    let attach = vmm.ctrl_type(&wire::attach_backing(1, &page_entries(HIGH_BASE, 2)));
    vmm.ok(&wire::transfer_to_host_2d(1, FULL, 0));
    let shown = flush_and_capture(&mut vmm);

    assert_eq!(attach, wire::RESP_OK_NODATA);
    assert_eq!(shown, content);
}

#[test]
fn test_backing_spanning_two_regions_transfers_both_parts() {
    let mut opts = VmmOptions::new(&[]);
    opts.high_region = true;
    let mut vmm = TestVmm::start_with(opts);
    let content = pattern(8, BYTES);
    vmm.write_guest(SITE_A, &content[..PAGE as usize]);
    vmm.write_guest(HIGH_BASE, &content[PAGE as usize..]);
    vmm.ok(&wire::resource_create_2d(
        1,
        wire::FORMAT_B8G8R8A8_UNORM,
        W,
        H,
    ));

    let attach = vmm.ctrl_type(&wire::attach_backing(
        1,
        &[entry(SITE_A, PAGE as u32), entry(HIGH_BASE, PAGE as u32)],
    ));
    vmm.ok(&wire::transfer_to_host_2d(1, FULL, 0));
    vmm.ok(&wire::set_scanout(0, 1, FULL));
    let shown = flush_and_capture(&mut vmm);

    assert_eq!(attach, wire::RESP_OK_NODATA);
    assert_eq!(shown, content);
}

#[test]
fn test_attach_backing_in_hole_between_regions_returns_invalid_parameter() {
    let mut opts = VmmOptions::new(&[]);
    opts.high_region = true;
    let mut vmm = TestVmm::start_with(opts);
    vmm.ok(&wire::resource_create_2d(
        1,
        wire::FORMAT_B8G8R8A8_UNORM,
        W,
        H,
    ));

    // 2 GiB lies between the 64 MiB low region and the 4 GiB high region.
    let resp = vmm.ctrl(&wire::attach_backing(1, &page_entries(0x8000_0000, 2)));

    assert_eq!(resp.type_(), wire::RESP_ERR_INVALID_PARAMETER);
    vmm.assert_alive();
}

#[test]
fn test_device_reset_drops_all_resources() {
    let mut vmm = start();
    create_uploaded(&mut vmm, &pattern(1, BYTES));

    vmm.reset();
    let transfer = vmm.ctrl_type(&wire::transfer_to_host_2d(1, FULL, 0));
    let recreate = vmm.ctrl_type(&wire::resource_create_2d(
        1,
        wire::FORMAT_B8G8R8A8_UNORM,
        W,
        H,
    ));

    assert_eq!(transfer, wire::RESP_ERR_INVALID_RESOURCE_ID);
    assert_eq!(recreate, wire::RESP_OK_NODATA);
    assert_eq!(vmm.metric("vugpu_resources"), 1.0);
}

#[test]
fn test_blob_flush_after_detach_fails_without_reading_pages() {
    let mut vmm = TestVmm::start(&["--blob"]);
    // 32x32 XRGB blob in one page.
    let content = pattern(4, PAGE as usize);
    vmm.write_guest(SITE_A, &content);
    vmm.ok(&wire::resource_create_blob(
        1,
        wire::BLOB_MEM_GUEST,
        wire::BLOB_FLAG_USE_SHAREABLE,
        PAGE,
        &page_entries(SITE_A, 1),
    ));
    vmm.ok(&wire::set_scanout_blob(
        0,
        1,
        Rect::new(0, 0, 32, 32),
        (32, 32, wire::FORMAT_B8G8R8X8_UNORM, 128),
    ));
    vmm.ok(&wire::detach_backing(1));
    let from = vmm.display_mark();
    let refused_before = vmm.metric("vugpu_refused_guest_accesses_total");

    let resp = vmm.ctrl(&wire::resource_flush(1, Rect::new(0, 0, 32, 32)));
    // A later SCANOUT message orders the display stream after the flush.
    vmm.create_backed_2d(2, 8, 8, &page_entries(SITE_B, 1));
    vmm.ok(&wire::set_scanout(0, 2, Rect::new(0, 0, 8, 8)));

    assert!(
        (wire::RESP_ERR_UNSPEC..=wire::RESP_ERR_INVALID_PARAMETER).contains(&resp.type_()),
        "flush of a detached guest blob answered {:#x}",
        resp.type_()
    );
    let display = vmm.display.as_ref().expect("display");
    let (idx, _) = display.wait_for(from, |m| matches!(m, DisplayMsg::Scanout { width: 8, .. }));
    let msgs = display.messages();
    assert!(
        !msgs[from..idx]
            .iter()
            .any(|m| matches!(m, DisplayMsg::Update { .. })),
        "an UPDATE was sent from detached pages"
    );
    assert_eq!(
        vmm.metric("vugpu_refused_guest_accesses_total"),
        refused_before + 1.0
    );
}

#[test]
fn test_blob_reattached_elsewhere_shows_new_pages() {
    let mut vmm = TestVmm::start(&["--blob"]);
    vmm.write_guest(SITE_A, &pattern(4, PAGE as usize));
    vmm.ok(&wire::resource_create_blob(
        1,
        wire::BLOB_MEM_GUEST,
        wire::BLOB_FLAG_USE_SHAREABLE,
        PAGE,
        &page_entries(SITE_A, 1),
    ));
    vmm.ok(&wire::set_scanout_blob(
        0,
        1,
        Rect::new(0, 0, 32, 32),
        (32, 32, wire::FORMAT_B8G8R8X8_UNORM, 128),
    ));
    vmm.ok(&wire::detach_backing(1));
    // A guest blob has no host copy: after swap-in its pages hold the data.
    let swapped_in = pattern(12, PAGE as usize);
    vmm.write_guest(SITE_B, &swapped_in);

    vmm.ok(&wire::attach_backing(1, &page_entries(SITE_B, 1)));
    let from = vmm.display_mark();
    vmm.ok(&wire::resource_flush(1, Rect::new(0, 0, 32, 32)));

    let display = vmm.display.as_ref().expect("display");
    let (_, msg) = display.wait_for(from, |m| matches!(m, DisplayMsg::Update { .. }));
    let DisplayMsg::Update { data, .. } = msg else {
        unreachable!()
    };
    assert_eq!(data, swapped_in);
}

#[test]
fn test_flush_of_detached_2d_scanout_shows_host_copy_without_refusal() {
    let mut vmm = start();
    let content = pattern(1, BYTES);
    create_uploaded(&mut vmm, &content);
    vmm.ok(&wire::detach_backing(1));
    vmm.write_guest(SITE_A, &vec![0x77; BYTES]);
    let refused_before = vmm.metric("vugpu_refused_guest_accesses_total");

    // A 2D flush shows the host copy: it needs no guest memory.
    let shown = flush_and_capture(&mut vmm);

    assert_eq!(shown, content);
    assert_eq!(
        vmm.metric("vugpu_refused_guest_accesses_total"),
        refused_before
    );
}

#[test]
fn test_unref_with_backing_releases_attached_bytes() {
    let mut vmm = start();
    vmm.create_backed_2d(1, W, H, &page_entries(SITE_A, 2));
    vmm.create_backed_2d(2, W, H, &page_entries(SITE_B, 2));

    vmm.ok(&wire::resource_unref(1));

    assert_eq!(vmm.metric("vugpu_attached_bytes"), (2 * PAGE) as f64);
    assert_eq!(vmm.metric("vugpu_resources"), 1.0);
    assert_eq!(vmm.metric("vugpu_resources_destroyed_total"), 1.0);
}

#[test]
fn test_memory_table_update_scanned_out_blob_shows_new_mapping() {
    let mut vmm = TestVmm::start(&["--blob"]);
    vmm.write_guest(SITE_A, &pattern(4, PAGE as usize));
    vmm.ok(&wire::resource_create_blob(
        1,
        wire::BLOB_MEM_GUEST,
        wire::BLOB_FLAG_USE_SHAREABLE,
        PAGE,
        &page_entries(SITE_A, 1),
    ));
    vmm.ok(&wire::set_scanout_blob(
        0,
        1,
        Rect::new(0, 0, 32, 32),
        (32, 32, wire::FORMAT_B8G8R8X8_UNORM, 128),
    ));

    let old = vmm.remap(false);
    let fresh = pattern(13, PAGE as usize);
    vmm.write_guest(SITE_A, &fresh);
    old.write_slice(&vec![0xcc; PAGE as usize], GuestAddress(SITE_A))
        .expect("scribble old mapping");
    let from = vmm.display_mark();
    vmm.ok(&wire::resource_flush(1, Rect::new(0, 0, 32, 32)));

    let display = vmm.display.as_ref().expect("display");
    let (_, msg) = display.wait_for(from, |m| matches!(m, DisplayMsg::Update { .. }));
    let DisplayMsg::Update { data, .. } = msg else {
        unreachable!()
    };
    assert_eq!(data, fresh, "blob scanout still reads the old mapping");
}

#[test]
fn test_detach_after_memory_table_update_then_reattach_keeps_content() {
    let mut vmm = start();
    let content = pattern(2, BYTES);
    create_uploaded(&mut vmm, &content);
    vmm.remap(true);

    vmm.ok(&wire::detach_backing(1));
    vmm.write_guest(HIGH_BASE, &vec![0x01; BYTES]);
    vmm.ok(&wire::attach_backing(1, &page_entries(HIGH_BASE, 2)));
    let shown = flush_and_capture(&mut vmm);

    assert_eq!(shown, content);
    assert_eq!(vmm.metric("vugpu_attached_bytes"), BYTES as f64);
}

#[test]
fn test_update_cursor_after_detach_uses_host_copy_without_refusal() {
    let mut vmm = start();
    // A 64x64 cursor (16 KiB, four pages) uploaded, then evicted.
    let image = pattern(40, 64 * 64 * 4);
    vmm.write_guest(SITE_A, &image);
    vmm.create_backed_2d(7, 64, 64, &page_entries(SITE_A, 4));
    vmm.ok(&wire::transfer_to_host_2d(7, Rect::new(0, 0, 64, 64), 0));
    vmm.ok(&wire::detach_backing(7));
    vmm.write_guest(SITE_A, &vec![0x55; image.len()]);
    let refused_before = vmm.metric("vugpu_refused_guest_accesses_total");
    let from = vmm.display_mark();

    vmm.send_segments(
        crate::common::CURSOR_Q,
        &[&wire::update_cursor(0, 3, 4, 7, (1, 1))],
        &[],
    );

    let display = vmm.display.as_ref().expect("display");
    let (_, msg) = display.wait_for(from, |m| matches!(m, DisplayMsg::CursorUpdate { .. }));
    let DisplayMsg::CursorUpdate { data, .. } = msg else {
        unreachable!()
    };
    assert_eq!(data, image);
    assert_eq!(
        vmm.metric("vugpu_refused_guest_accesses_total"),
        refused_before
    );
}

#[test]
fn test_shrinker_like_cycles_keep_every_resource_content_and_counts() {
    let mut vmm = start();
    // 24 resources of 64x32 (two pages each), each evicted and restored at
    // new pages three times, as a guest shrinker under pressure would.
    const N: u32 = 24;
    const CYCLES: u64 = 3;
    let slot = |id: u32, cycle: u64| DATA_BASE + (cycle * u64::from(N) + u64::from(id)) * 2 * PAGE;
    for id in 1..=N {
        let content = pattern(id as u8, BYTES);
        vmm.write_guest(slot(id, 0), &content);
        vmm.create_backed_2d(id, W, H, &page_entries(slot(id, 0), 2));
        vmm.ok(&wire::transfer_to_host_2d(id, FULL, 0));
    }

    for cycle in 1..=CYCLES {
        for id in 1..=N {
            vmm.ok(&wire::with_fence(
                wire::detach_backing(id),
                cycle * 100 + u64::from(id),
                0,
            ));
            // The old pages are reused by someone else.
            vmm.write_guest(slot(id, cycle - 1), &vec![0xf0; BYTES]);
        }
        for id in 1..=N {
            vmm.ok(&wire::attach_backing(id, &page_entries(slot(id, cycle), 2)));
        }
    }

    for id in 1..=N {
        vmm.ok(&wire::set_scanout(0, id, FULL));
        let shown = flush_and_capture_id(&mut vmm, id);
        assert_eq!(shown, pattern(id as u8, BYTES), "resource {id}");
    }
    let cycles = f64::from(N) * CYCLES as f64;
    assert_eq!(vmm.metric("vugpu_detach_backing_total"), cycles);
    assert_eq!(
        vmm.metric("vugpu_attach_backing_total"),
        cycles + f64::from(N)
    );
    assert_eq!(
        vmm.metric("vugpu_attached_bytes"),
        f64::from(N) * BYTES as f64
    );
    assert_eq!(vmm.metric("vugpu_fences_completed_total"), cycles);
    assert_eq!(vmm.metric("vugpu_refused_guest_accesses_total"), 0.0);
}

#[test]
fn test_device_reset_zeroes_resource_and_backing_gauges() {
    let mut vmm = start();
    create_uploaded(&mut vmm, &pattern(1, BYTES));
    vmm.create_backed_2d(2, W, H, &page_entries(SITE_B, 2));

    vmm.reset();
    // A command round trip: the worker applies the posted reset before it.
    vmm.assert_alive();

    assert_eq!(vmm.metric("vugpu_resources"), 0.0);
    assert_eq!(vmm.metric("vugpu_attached_bytes"), 0.0);
    assert_eq!(vmm.metric("vugpu_host_memory_bytes"), 0.0);
    assert_eq!(vmm.metric("vugpu_resources_destroyed_total"), 2.0);
}

#[test]
fn test_transfer_gathers_odd_sized_scattered_and_adjacent_entries() {
    let mut vmm = start();
    // 16x16 BGRA = 1024 bytes split into odd pieces: some adjacent (to be
    // coalesced), some scattered, in a non-monotonic address order.
    let content = pattern(77, 1024);
    let pieces: [(u64, usize); 5] = [
        (SITE_B + 3, 100),
        (SITE_B + 103, 1),
        (SITE_A + 5000, 300),
        (SITE_A + 17, 600),
        (SITE_B + 9000, 23),
    ];
    let mut at = 0;
    for (addr, len) in pieces {
        vmm.write_guest(addr, &content[at..at + len]);
        at += len;
    }
    let entries: Vec<_> = pieces.iter().map(|&(a, l)| entry(a, l as u32)).collect();
    vmm.ok(&wire::resource_create_2d(
        1,
        wire::FORMAT_B8G8R8A8_UNORM,
        16,
        16,
    ));
    vmm.ok(&wire::attach_backing(1, &entries));

    vmm.ok(&wire::transfer_to_host_2d(1, Rect::new(0, 0, 16, 16), 0));
    vmm.ok(&wire::set_scanout(0, 1, Rect::new(0, 0, 16, 16)));
    let from = vmm.display_mark();
    vmm.ok(&wire::resource_flush(1, Rect::new(0, 0, 16, 16)));

    let display = vmm.display.as_ref().expect("display");
    let (_, msg) = display.wait_for(from, |m| matches!(m, DisplayMsg::Update { .. }));
    let DisplayMsg::Update { data, .. } = msg else {
        unreachable!()
    };
    assert_eq!(data, content);
    assert_eq!(vmm.metric("vugpu_attached_bytes"), 1024.0);
}

/// 64-bit FNV-1a, written here independently of the daemon's.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The bytes of `rect` of a `width`-pixel-wide BGRA image in `buf` whose
/// plane starts at `offset` with rows `stride` bytes apart.
fn rect_bytes(buf: &[u8], offset: usize, stride: usize, rect: Rect) -> Vec<u8> {
    let mut out = Vec::new();
    for row in rect.y..rect.y + rect.height {
        let start = offset + row as usize * stride + rect.x as usize * 4;
        out.extend_from_slice(&buf[start..start + rect.width as usize * 4]);
    }
    out
}

/// A daemon with `args` plus a read digest log; returns it and the log path.
fn start_with_digest_log(args: &[&str], display: bool) -> (TestVmm, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!(
        "vugpu-digest-{}-{}.jsonl",
        std::process::id(),
        DIGEST_LOGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&path);
    let mut opts = VmmOptions::new(args);
    opts.args.push("--test-only-read-digest-log".to_owned());
    opts.args.push(path.display().to_string());
    opts.display = display;
    (TestVmm::start_with(opts), path)
}

static DIGEST_LOGS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn digest_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn digest_line(id: u32, op: &str, r: Rect, digest: u64) -> String {
    format!(
        r#"{{"resource_id":{id},"op":"{op}","x":{},"y":{},"w":{},"h":{},"fnv1a64":"{digest:016x}"}}"#,
        r.x, r.y, r.width, r.height
    )
}

#[test]
fn test_read_digest_log_transfer_digests_the_rect_as_read() {
    let (mut vmm, path) = start_with_digest_log(&[], false);
    let content = pattern(71, BYTES);
    vmm.write_guest(SITE_A, &content);
    vmm.create_backed_2d(1, W, H, &page_entries(SITE_A, 2));
    let rect = Rect::new(8, 4, 16, 8);
    let stride = W as usize * 4;
    // As Linux sends it: the offset of the rect's first pixel.
    let offset = 4 * stride as u64 + 8 * 4;

    vmm.ok(&wire::transfer_to_host_2d(1, rect, offset));

    let expected = fnv1a64(&rect_bytes(&content, 0, stride, rect));
    assert_eq!(
        digest_lines(&path),
        vec![digest_line(1, "transfer", rect, expected)]
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn test_read_digest_log_transfer_after_reattach_elsewhere_digests_new_pages() {
    let (mut vmm, path) = start_with_digest_log(&[], false);
    vmm.write_guest(SITE_A, &pattern(72, BYTES));
    vmm.create_backed_2d(1, W, H, &page_entries(SITE_A, 2));
    vmm.ok(&wire::transfer_to_host_2d(1, FULL, 0));
    vmm.ok(&wire::detach_backing(1));
    let moved = pattern(73, BYTES);
    vmm.write_guest(SITE_B, &moved);
    vmm.ok(&wire::attach_backing(1, &page_entries(SITE_B, 2)));

    vmm.ok(&wire::transfer_to_host_2d(1, FULL, 0));

    let lines = digest_lines(&path);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1], digest_line(1, "transfer", FULL, fnv1a64(&moved)));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn test_read_digest_log_headless_blob_scanout_and_flush_are_logged() {
    let (mut vmm, path) = start_with_digest_log(&["--blob"], false);
    // A 16x8 image at offset 256 of a one-page blob, rows 128 bytes apart.
    let blob = pattern(74, PAGE as usize);
    vmm.write_guest(DATA_BASE, &blob);
    vmm.ok(&wire::resource_create_blob(
        1,
        wire::BLOB_MEM_GUEST,
        wire::BLOB_FLAG_USE_SHAREABLE,
        PAGE,
        &page_entries(DATA_BASE, 1),
    ));
    let shown = Rect::new(0, 0, 16, 8);
    vmm.ok(&wire::set_scanout_blob_at(
        0,
        1,
        shown,
        (16, 8, wire::FORMAT_B8G8R8X8_UNORM, 128),
        256,
    ));
    let damage = Rect::new(2, 3, 5, 4);

    vmm.ok(&wire::resource_flush(1, damage));

    assert_eq!(
        digest_lines(&path),
        vec![
            digest_line(
                1,
                "scanout",
                shown,
                fnv1a64(&rect_bytes(&blob, 256, 128, shown))
            ),
            digest_line(
                1,
                "flush",
                damage,
                fnv1a64(&rect_bytes(&blob, 256, 128, damage))
            ),
        ]
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn test_fault_attach_error_answers_unspec_and_attaches_nothing() {
    let mut vmm = TestVmm::start(&["--test-only-fault", "attach-error"]);
    vmm.ok(&wire::resource_create_2d(
        1,
        wire::FORMAT_B8G8R8A8_UNORM,
        W,
        H,
    ));

    let attach = vmm.ctrl_type(&wire::attach_backing(1, &page_entries(SITE_A, 2)));
    let transfer = vmm.ctrl_type(&wire::transfer_to_host_2d(1, FULL, 0));

    assert_eq!(attach, wire::RESP_ERR_UNSPEC);
    assert_eq!(transfer, wire::RESP_ERR_UNSPEC);
    assert_eq!(vmm.metric("vugpu_injected_faults_total"), 1.0);
    assert_eq!(vmm.metric("vugpu_attached_bytes"), 0.0);
    assert!(vmm
        .daemon_log()
        .contains("TEST-ONLY FAULT INJECTION ENABLED"));
}

#[test]
fn test_fault_detach_error_answers_unspec_and_keeps_the_backing() {
    let mut vmm = TestVmm::start(&["--test-only-fault", "detach-error"]);
    vmm.create_backed_2d(1, W, H, &page_entries(SITE_A, 2));

    let detach = vmm.ctrl_type(&wire::detach_backing(1));
    let transfer = vmm.ctrl_type(&wire::transfer_to_host_2d(1, FULL, 0));

    assert_eq!(detach, wire::RESP_ERR_UNSPEC);
    assert_eq!(transfer, wire::RESP_OK_NODATA);
    assert_eq!(vmm.metric("vugpu_injected_faults_total"), 1.0);
    assert_eq!(vmm.metric("vugpu_attached_bytes"), (2 * PAGE) as f64);
}

#[test]
fn test_fault_detach_delay_delays_the_response_by_about_n_ms() {
    let mut vmm = TestVmm::start(&["--test-only-fault", "detach-delay-ms=300"]);
    vmm.create_backed_2d(1, W, H, &page_entries(SITE_A, 2));

    let started = std::time::Instant::now();
    vmm.ok(&wire::detach_backing(1));
    let took = started.elapsed();

    assert!(took >= std::time::Duration::from_millis(300), "{took:?}");
    assert!(took < std::time::Duration::from_secs(3), "{took:?}");
    assert_eq!(vmm.metric("vugpu_injected_faults_total"), 1.0);
}

#[test]
fn test_fault_detach_no_reply_consumes_the_request_and_keeps_serving() {
    let mut vmm = TestVmm::start(&["--test-only-fault", "detach-no-reply"]);
    vmm.create_backed_2d(1, W, H, &page_entries(SITE_A, 2));
    let detach = wire::detach_backing(1);
    vmm.write_guest(0x1_0000, &detach);
    vmm.push_chain(
        crate::common::CTRL_Q,
        &[
            crate::common::Desc {
                addr: 0x1_0000,
                len: detach.len() as u32,
                write: false,
            },
            crate::common::Desc {
                addr: 0x8_0000,
                len: 24,
                write: true,
            },
        ],
    );
    vmm.kick(crate::common::CTRL_Q);
    let answered = vmm.try_wait_used(crate::common::CTRL_Q, std::time::Duration::from_millis(500));

    let transfer = vmm.ctrl_type(&wire::transfer_to_host_2d(1, FULL, 0));

    assert!(answered.is_none(), "DETACH_BACKING was answered");
    assert_eq!(transfer, wire::RESP_OK_NODATA);
    assert_eq!(vmm.metric("vugpu_injected_faults_total"), 1.0);
}
