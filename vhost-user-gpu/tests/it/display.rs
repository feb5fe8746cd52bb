//! What the daemon sends on the vhost-user GPU display socket: scanout
//! geometry, update rectangles relative to the scanout, large updates,
//! several outputs, and display information coming from the frontend.

use crate::common::wire::{self, Rect};
use crate::common::{
    entry, page_entries, pattern, DisplayMsg, TestVmm, VmmOptions, CTRL_Q, DATA_BASE, PAGE,
};

/// Every UPDATE for `scanout` received from index `from` up to the first
/// message matching `end`.
fn updates_until(
    vmm: &TestVmm,
    from: usize,
    end: impl Fn(&DisplayMsg) -> bool,
) -> Vec<(u32, Rect, Vec<u8>)> {
    let display = vmm.display.as_ref().expect("display");
    let (idx, _) = display.wait_for(from, end);
    display.messages()[from..idx]
        .iter()
        .filter_map(|m| match m {
            DisplayMsg::Update {
                scanout_id,
                rect,
                data,
            } => Some((*scanout_id, *rect, data.clone())),
            _ => None,
        })
        .collect()
}

/// Paints the UPDATE messages into a `w`x`h` BGRA canvas.
fn compose(updates: &[(u32, Rect, Vec<u8>)], w: u32, h: u32) -> Vec<u8> {
    let mut canvas = vec![0u8; (w * h * 4) as usize];
    for (_, r, data) in updates {
        assert_eq!(data.len(), (r.width * r.height * 4) as usize, "update size");
        for row in 0..r.height {
            let src = (row * r.width * 4) as usize;
            let dst = (((r.y + row) * w + r.x) * 4) as usize;
            canvas[dst..dst + (r.width * 4) as usize]
                .copy_from_slice(&data[src..src + (r.width * 4) as usize]);
        }
    }
    canvas
}

#[test]
fn test_display_info_from_frontend_overrides_command_line_size() {
    let mut opts = VmmOptions::new(&["--width", "1024", "--height", "768"]);
    opts.display_size = Some((800, 600));
    let mut vmm = TestVmm::start_with(opts);

    let resp = vmm.send(CTRL_Q, &wire::get_display_info(), 408);

    assert_eq!(resp.type_(), wire::RESP_OK_DISPLAY_INFO);
    assert_eq!(
        (wire::le32(&resp.bytes, 32), wire::le32(&resp.bytes, 36)),
        (800, 600)
    );
}

#[test]
fn test_scanout_with_offset_rect_sends_updates_relative_to_scanout() {
    let mut vmm = TestVmm::start(&[]);
    // 32x32 resource (4 KiB); the scanout shows its 16x16 centre.
    let pixels = pattern(17, 32 * 32 * 4);
    vmm.write_guest(DATA_BASE, &pixels);
    vmm.create_backed_2d(1, 32, 32, &page_entries(DATA_BASE, 1));
    vmm.ok(&wire::transfer_to_host_2d(1, Rect::new(0, 0, 32, 32), 0));
    vmm.ok(&wire::set_scanout(0, 1, Rect::new(8, 8, 16, 16)));
    let from = vmm.display_mark();

    vmm.ok(&wire::resource_flush(1, Rect::new(0, 0, 32, 32)));
    vmm.display_mark();

    let updates = updates_until(&vmm, from, |m| matches!(m, DisplayMsg::CursorPos { .. }));
    assert!(!updates.is_empty(), "no UPDATE for the flush");
    let mut expected = Vec::new();
    for row in 8..24 {
        let start = (row * 32 + 8) * 4;
        expected.extend_from_slice(&pixels[start..start + 64]);
    }
    assert_eq!(compose(&updates, 16, 16), expected);
    assert!(updates
        .iter()
        .all(|(s, r, _)| *s == 0 && r.x + r.width <= 16 && r.y + r.height <= 16));
}

#[test]
fn test_scanout_with_offset_rect_reports_scanout_size() {
    let mut vmm = TestVmm::start(&[]);
    vmm.create_backed_2d(1, 32, 32, &page_entries(DATA_BASE, 1));

    vmm.ok(&wire::set_scanout(0, 1, Rect::new(8, 4, 16, 12)));

    let display = vmm.display.as_ref().expect("display");
    let (_, msg) = display.wait_for(0, |m| matches!(m, DisplayMsg::Scanout { .. }));
    assert_eq!(
        msg,
        DisplayMsg::Scanout {
            scanout_id: 0,
            width: 16,
            height: 12
        }
    );
}

#[test]
fn test_full_screen_flush_updates_compose_to_resource_content() {
    let mut vmm = TestVmm::start(&["--width", "1280", "--height", "800"]);
    // 1280x800 BGRA = 4000 KiB, 1000 pages in one entry.
    let (w, h) = (1280u32, 800u32);
    let bytes = (w * h * 4) as usize;
    let pixels = pattern(29, bytes);
    vmm.write_guest(DATA_BASE, &pixels);
    vmm.create_backed_2d(1, w, h, &[entry(DATA_BASE, bytes as u32)]);
    vmm.ok(&wire::transfer_to_host_2d(1, Rect::new(0, 0, w, h), 0));
    vmm.ok(&wire::set_scanout(0, 1, Rect::new(0, 0, w, h)));
    let from = vmm.display_mark();

    vmm.ok(&wire::resource_flush(1, Rect::new(0, 0, w, h)));
    vmm.display_mark();

    let updates = updates_until(&vmm, from, |m| matches!(m, DisplayMsg::CursorPos { .. }));
    assert!(
        compose(&updates, w, h) == pixels,
        "composed updates differ from the resource"
    );
}

#[test]
fn test_flush_of_resource_on_two_scanouts_updates_both() {
    let mut vmm = TestVmm::start(&["--num-outputs", "2"]);
    let pixels = pattern(31, 16 * 16 * 4);
    vmm.write_guest(DATA_BASE, &pixels);
    vmm.create_backed_2d(1, 16, 16, &[entry(DATA_BASE, 1024)]);
    vmm.ok(&wire::transfer_to_host_2d(1, Rect::new(0, 0, 16, 16), 0));
    vmm.ok(&wire::set_scanout(0, 1, Rect::new(0, 0, 16, 16)));
    vmm.ok(&wire::set_scanout(1, 1, Rect::new(0, 0, 16, 16)));
    let from = vmm.display_mark();

    vmm.ok(&wire::resource_flush(1, Rect::new(0, 0, 16, 16)));
    vmm.display_mark();

    let updates = updates_until(&vmm, from, |m| matches!(m, DisplayMsg::CursorPos { .. }));
    for scanout in [0, 1] {
        let mine: Vec<_> = updates.iter().filter(|u| u.0 == scanout).cloned().collect();
        assert_eq!(compose(&mine, 16, 16), pixels, "scanout {scanout}");
    }
}

#[test]
fn test_set_scanout_blob_stride_beyond_blob_returns_invalid_parameter() {
    let mut vmm = TestVmm::start(&["--blob"]);
    vmm.ok(&wire::resource_create_blob(
        1,
        wire::BLOB_MEM_GUEST,
        wire::BLOB_FLAG_USE_SHAREABLE,
        PAGE,
        &page_entries(DATA_BASE, 1),
    ));

    // 32x64 at stride 128 needs 8 KiB; the blob has 4 KiB.
    let resp = vmm.ctrl(&wire::set_scanout_blob(
        0,
        1,
        Rect::new(0, 0, 32, 64),
        (32, 64, wire::FORMAT_B8G8R8X8_UNORM, 128),
    ));

    assert_eq!(resp.type_(), wire::RESP_ERR_INVALID_PARAMETER);
    vmm.assert_alive();
}

#[test]
fn test_set_scanout_blob_stride_below_row_returns_invalid_parameter() {
    let mut vmm = TestVmm::start(&["--blob"]);
    vmm.ok(&wire::resource_create_blob(
        1,
        wire::BLOB_MEM_GUEST,
        wire::BLOB_FLAG_USE_SHAREABLE,
        PAGE,
        &page_entries(DATA_BASE, 1),
    ));

    // A 32-pixel row needs 128 bytes; stride 64 would overlap rows.
    let resp = vmm.ctrl(&wire::set_scanout_blob(
        0,
        1,
        Rect::new(0, 0, 32, 16),
        (32, 16, wire::FORMAT_B8G8R8X8_UNORM, 64),
    ));

    assert_eq!(resp.type_(), wire::RESP_ERR_INVALID_PARAMETER);
}

#[test]
fn test_resource_create_blob_host3d_returns_invalid_parameter() {
    let mut vmm = TestVmm::start(&["--blob"]);

    // VIRTIO_GPU_BLOB_MEM_HOST3D (2) needs a 3D context.
    let resp = vmm.ctrl(&wire::resource_create_blob(1, 2, 0, PAGE, &[]));

    assert_eq!(resp.type_(), wire::RESP_ERR_INVALID_PARAMETER);
}

#[test]
fn test_resource_create_blob_entries_smaller_than_size_returns_invalid_parameter() {
    let mut vmm = TestVmm::start(&["--blob"]);

    let resp = vmm.ctrl(&wire::resource_create_blob(
        1,
        wire::BLOB_MEM_GUEST,
        wire::BLOB_FLAG_USE_SHAREABLE,
        4 * PAGE,
        &page_entries(DATA_BASE, 1),
    ));

    assert_eq!(resp.type_(), wire::RESP_ERR_INVALID_PARAMETER);
    // Nothing was created.
    assert_eq!(vmm.metric("vugpu_resources"), 0.0);
}

#[test]
fn test_resource_create_blob_zero_size_returns_invalid_parameter() {
    let mut vmm = TestVmm::start(&["--blob"]);

    let resp = vmm.ctrl(&wire::resource_create_blob(
        1,
        wire::BLOB_MEM_GUEST,
        wire::BLOB_FLAG_USE_SHAREABLE,
        0,
        &[],
    ));

    assert_eq!(resp.type_(), wire::RESP_ERR_INVALID_PARAMETER);
}

#[test]
fn test_transfer_to_host_2d_on_guest_blob_is_accepted() {
    let mut vmm = TestVmm::start(&["--blob"]);
    vmm.ok(&wire::resource_create_blob(
        1,
        wire::BLOB_MEM_GUEST,
        wire::BLOB_FLAG_USE_SHAREABLE,
        PAGE,
        &page_entries(DATA_BASE, 1),
    ));

    // Linux sends TRANSFER_TO_HOST_2D for dumb buffers even when they are
    // guest blobs (virtio_gpu_update_dumb_bo): it must not be an error.
    let resp = vmm.ctrl(&wire::transfer_to_host_2d(1, Rect::new(0, 0, 32, 32), 0));

    assert_eq!(resp.type_(), wire::RESP_OK_NODATA);
}

#[test]
fn test_set_scanout_blob_without_backing_shows_nothing_until_attach() {
    let mut vmm = TestVmm::start(&["--blob"]);
    vmm.ok(&wire::resource_create_blob(
        1,
        wire::BLOB_MEM_GUEST,
        wire::BLOB_FLAG_USE_SHAREABLE,
        PAGE,
        &[],
    ));
    let refused_before = vmm.metric("vugpu_refused_guest_accesses_total");
    let from = vmm.display_mark();

    let resp = vmm.ctrl(&wire::set_scanout_blob(
        0,
        1,
        Rect::new(0, 0, 32, 32),
        (32, 32, wire::FORMAT_B8G8R8X8_UNORM, 128),
    ));
    vmm.display_mark();

    // Either refused, or accepted without reading any guest page.
    let updates = updates_until(&vmm, from, |m| matches!(m, DisplayMsg::CursorPos { .. }));
    assert!(
        updates.is_empty(),
        "pixels sent from a blob without backing"
    );
    if resp.type_() == wire::RESP_OK_NODATA {
        assert_eq!(
            vmm.metric("vugpu_refused_guest_accesses_total"),
            refused_before
        );
    } else {
        assert!((wire::RESP_ERR_UNSPEC..=wire::RESP_ERR_INVALID_PARAMETER).contains(&resp.type_()));
    }
}

#[test]
fn test_get_vring_base_while_display_write_blocks_does_not_deadlock() {
    let mut vmm = TestVmm::start(&["--width", "1280", "--height", "800"]);
    // A full-screen 4000 KiB update is far larger than a socket buffer.
    let (w, h) = (1280u32, 800u32);
    let bytes = w * h * 4;
    vmm.create_backed_2d(1, w, h, &[entry(DATA_BASE, bytes)]);
    vmm.ok(&wire::transfer_to_host_2d(1, Rect::new(0, 0, w, h), 0));
    vmm.ok(&wire::set_scanout(0, 1, Rect::new(0, 0, w, h)));
    vmm.display_mark();
    vmm.display.as_ref().expect("display").set_paused(true);
    let flush = wire::resource_flush(1, Rect::new(0, 0, w, h));
    vmm.write_guest(0x1_0000, &flush);
    vmm.push_chain(
        CTRL_Q,
        &[
            crate::common::Desc {
                addr: 0x1_0000,
                len: flush.len() as u32,
                write: false,
            },
            crate::common::Desc {
                addr: 0x8_0000,
                len: 24,
                write: true,
            },
        ],
    );
    vmm.kick(CTRL_Q);
    let blocked = vmm
        .try_wait_used(CTRL_Q, std::time::Duration::from_secs(2))
        .is_some();
    vmm.set_reply_timeout(std::time::Duration::from_secs(5));

    // QEMU stops the rings from its main loop, which is also the loop that
    // would read the display socket: the reply must not wait for the worker.
    let base = vhost::VhostBackend::get_vring_base(vmm.frontend(), CTRL_Q);
    vmm.display.as_ref().expect("display").set_paused(false);

    assert!(blocked, "the flush waited for the stalled display");
    assert!(base.is_ok(), "GET_VRING_BASE failed: {base:?}");
}

/// Starts a daemon, shows a full 1280x800 screen, stalls the display
/// frontend and queues a full-screen flush (4000 KiB of updates, far more
/// than a socket buffer); returns whether the flush completed anyway within
/// two seconds (the display costs updates, never the queue).
fn stall_on_display_write(inherit_fd: bool) -> (TestVmm, bool) {
    let mut opts = VmmOptions::new(&["--width", "1280", "--height", "800"]);
    opts.inherit_fd = inherit_fd;
    let mut vmm = TestVmm::start_with(opts);
    let (w, h) = (1280u32, 800u32);
    vmm.create_backed_2d(1, w, h, &[entry(DATA_BASE, w * h * 4)]);
    vmm.ok(&wire::set_scanout(0, 1, Rect::new(0, 0, w, h)));
    vmm.display_mark();
    vmm.display.as_ref().expect("display").set_paused(true);
    let flush = wire::resource_flush(1, Rect::new(0, 0, w, h));
    vmm.write_guest(0x1_0000, &flush);
    vmm.push_chain(
        CTRL_Q,
        &[
            crate::common::Desc {
                addr: 0x1_0000,
                len: flush.len() as u32,
                write: false,
            },
            crate::common::Desc {
                addr: 0x8_0000,
                len: 24,
                write: true,
            },
        ],
    );
    vmm.kick(CTRL_Q);
    let completed = vmm
        .try_wait_used(CTRL_Q, std::time::Duration::from_secs(2))
        .is_some();
    (vmm, completed)
}

#[test]
fn test_sigterm_while_display_write_blocks_exits_zero() {
    let (mut vmm, blocked) = stall_on_display_write(false);

    // An orchestrator stopping a hung VM sends SIGTERM to the daemon.
    let status = vmm.terminate_and_wait();

    assert!(blocked, "the flush waited for the stalled display");
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        vmm.daemon_log_tail()
    );
    assert!(!vmm.socket().exists(), "socket file left behind");
}

#[test]
fn test_disconnect_while_display_write_blocks_exits_zero() {
    let (mut vmm, blocked) = stall_on_display_write(true);

    // The VMM closes the vhost-user connection but not (yet) the display.
    let status = vmm.disconnect_and_wait();

    assert!(blocked, "the flush waited for the stalled display");
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        vmm.daemon_log_tail()
    );
}

#[test]
fn test_scanout_blob_with_offset_and_padded_stride_shows_right_pixels() {
    let mut vmm = TestVmm::start(&["--blob"]);
    // Two-page blob; the 16x16 plane starts at 4096 with a 128-byte stride
    // (64 bytes of pixels and 64 bytes of padding per row).
    let blob = pattern(51, 2 * PAGE as usize);
    vmm.write_guest(DATA_BASE, &blob);
    vmm.ok(&wire::resource_create_blob(
        1,
        wire::BLOB_MEM_GUEST,
        wire::BLOB_FLAG_USE_SHAREABLE,
        2 * PAGE,
        &page_entries(DATA_BASE, 2),
    ));
    vmm.ok(&wire::set_scanout_blob_at(
        0,
        1,
        Rect::new(0, 0, 16, 16),
        (16, 16, wire::FORMAT_B8G8R8X8_UNORM, 128),
        PAGE as u32,
    ));
    let from = vmm.display_mark();

    vmm.ok(&wire::resource_flush(1, Rect::new(0, 0, 16, 16)));
    vmm.display_mark();

    let mut expected = Vec::new();
    for row in 0..16 {
        let start = PAGE as usize + row * 128;
        expected.extend_from_slice(&blob[start..start + 64]);
    }
    let updates = updates_until(&vmm, from, |m| matches!(m, DisplayMsg::CursorPos { .. }));
    assert!(!updates.is_empty(), "no UPDATE for the flush");
    assert_eq!(compose(&updates, 16, 16), expected);
}

#[test]
fn test_scanout_blob_offset_past_blob_end_returns_invalid_parameter() {
    let mut vmm = TestVmm::start(&["--blob"]);
    vmm.ok(&wire::resource_create_blob(
        1,
        wire::BLOB_MEM_GUEST,
        wire::BLOB_FLAG_USE_SHAREABLE,
        PAGE,
        &page_entries(DATA_BASE, 1),
    ));

    // 16 rows of 64 bytes from offset 4000 run past the 4096-byte blob.
    let resp = vmm.ctrl(&wire::set_scanout_blob_at(
        0,
        1,
        Rect::new(0, 0, 16, 16),
        (16, 16, wire::FORMAT_B8G8R8X8_UNORM, 64),
        4000,
    ));

    assert_eq!(resp.type_(), wire::RESP_ERR_INVALID_PARAMETER);
    vmm.assert_alive();
}

#[test]
fn test_scanout_blob_over_scattered_entries_gathers_in_entry_order() {
    let mut vmm = TestVmm::start(&["--blob"]);
    // Blob byte 0..4096 lives at page B, 4096..8192 at page A (A < B).
    let (a, b) = (DATA_BASE, DATA_BASE + 0x10_0000);
    let blob = pattern(61, 2 * PAGE as usize);
    vmm.write_guest(b, &blob[..PAGE as usize]);
    vmm.write_guest(a, &blob[PAGE as usize..]);
    vmm.ok(&wire::resource_create_blob(
        1,
        wire::BLOB_MEM_GUEST,
        wire::BLOB_FLAG_USE_SHAREABLE,
        2 * PAGE,
        &[entry(b, PAGE as u32), entry(a, PAGE as u32)],
    ));
    vmm.ok(&wire::set_scanout_blob(
        0,
        1,
        Rect::new(0, 0, 32, 64),
        (32, 64, wire::FORMAT_B8G8R8X8_UNORM, 128),
    ));
    let from = vmm.display_mark();

    vmm.ok(&wire::resource_flush(1, Rect::new(0, 0, 32, 64)));
    vmm.display_mark();

    let updates = updates_until(&vmm, from, |m| matches!(m, DisplayMsg::CursorPos { .. }));
    assert_eq!(compose(&updates, 32, 64), blob);
}

#[test]
fn test_second_gpu_set_socket_moves_display_to_new_socket() {
    let mut vmm = TestVmm::start(&[]);
    vmm.create_backed_2d(1, 16, 16, &[entry(DATA_BASE, 1024)]);

    // Guest reset or driver reload: QEMU closes the display socket and sends
    // a new one with VHOST_USER_GPU_SET_SOCKET on the next DRIVER_OK.
    vmm.replace_display(1280, 800);
    let resp = vmm.ctrl(&wire::set_scanout(0, 1, Rect::new(0, 0, 16, 16)));

    assert_eq!(resp.type_(), wire::RESP_OK_NODATA);
    let display = vmm.display.as_ref().expect("display");
    let (_, msg) = display.wait_for(0, |m| matches!(m, DisplayMsg::Scanout { .. }));
    assert_eq!(
        msg,
        DisplayMsg::Scanout {
            scanout_id: 0,
            width: 16,
            height: 16
        }
    );
}

/// A 16x16 blob (one page) at `gpa` filled with `pattern(seed)`, shown on
/// scanout 0.
fn shown_blob(vmm: &mut TestVmm, gpa: u64, seed: u8) -> Vec<u8> {
    let blob = pattern(seed, PAGE as usize);
    vmm.write_guest(gpa, &blob);
    vmm.ok(&wire::resource_create_blob(
        1,
        wire::BLOB_MEM_GUEST,
        wire::BLOB_FLAG_USE_SHAREABLE,
        PAGE,
        &page_entries(gpa, 1),
    ));
    vmm.ok(&wire::set_scanout_blob(
        0,
        1,
        Rect::new(0, 0, 16, 16),
        (16, 16, wire::FORMAT_B8G8R8X8_UNORM, 64),
    ));
    blob
}

#[test]
fn test_blob_swap_reattach_at_other_pages_shows_the_new_pages() {
    let mut vmm = TestVmm::start(&["--blob"]);
    shown_blob(&mut vmm, DATA_BASE, 61);
    vmm.ok(&wire::detach_backing(1));
    // The guest swapped the blob in at other pages, with other content
    // than the old pages now hold.
    let moved = pattern(62, PAGE as usize);
    vmm.write_guest(DATA_BASE + 0x20_0000, &moved);
    vmm.write_guest(DATA_BASE, &pattern(63, PAGE as usize));
    vmm.ok(&wire::attach_backing(
        1,
        &page_entries(DATA_BASE + 0x20_0000, 1),
    ));
    let from = vmm.display_mark();

    vmm.ok(&wire::resource_flush(1, Rect::new(0, 0, 16, 16)));
    vmm.display_mark();

    let updates = updates_until(&vmm, from, |m| matches!(m, DisplayMsg::CursorPos { .. }));
    // The 16x16 image with 64-byte rows is the first KiB of the blob.
    assert!(
        compose(&updates, 16, 16) == moved[..1024],
        "old pages shown"
    );
    assert_eq!(vmm.metric("vugpu_refused_guest_accesses_total"), 0.0);
}

#[test]
fn test_blob_swap_detached_blob_is_never_read_and_refusals_are_counted() {
    let mut vmm = TestVmm::start(&["--blob"]);
    shown_blob(&mut vmm, DATA_BASE, 64);
    vmm.ok(&wire::detach_backing(1));
    let from = vmm.display_mark();

    let flush = vmm.ctrl_type(&wire::resource_flush(1, Rect::new(0, 0, 16, 16)));
    let scanout = vmm.ctrl_type(&wire::set_scanout_blob(
        0,
        1,
        Rect::new(0, 0, 16, 16),
        (16, 16, wire::FORMAT_B8G8R8X8_UNORM, 64),
    ));
    let transfer = vmm.ctrl_type(&wire::transfer_to_host_2d(1, Rect::new(0, 0, 16, 16), 0));
    vmm.display_mark();

    assert_eq!(flush, wire::RESP_ERR_UNSPEC);
    assert_eq!(scanout, wire::RESP_ERR_UNSPEC);
    assert_eq!(transfer, wire::RESP_ERR_UNSPEC);
    assert_eq!(vmm.metric("vugpu_refused_guest_accesses_total"), 3.0);
    let updates = updates_until(&vmm, from, |m| matches!(m, DisplayMsg::CursorPos { .. }));
    assert!(updates.is_empty(), "pixels of a detached blob were sent");
}

#[test]
fn test_queue_stopped_after_get_vring_base_timeout_is_never_written_again() {
    let (mut vmm, blocked) = stall_on_display_write(false);
    vmm.set_reply_timeout(std::time::Duration::from_secs(5));
    // GET_VRING_BASE gives up waiting for the stalled flush (bounded wait).
    let base = vhost::VhostBackend::get_vring_base(vmm.frontend(), CTRL_Q);
    let used_at_stop = vmm.used_idx(CTRL_Q);

    // The display drains; the worker finishes the flush afterwards.
    vmm.display.as_ref().expect("display").set_paused(false);
    std::thread::sleep(std::time::Duration::from_millis(1500));

    assert!(blocked, "the flush waited for the stalled display");
    assert!(base.is_ok(), "GET_VRING_BASE failed: {base:?}");
    assert_eq!(
        vmm.used_idx(CTRL_Q),
        used_at_stop,
        "used ring written after stop"
    );
}

#[test]
fn test_display_that_stops_reading_costs_display_updates_only() {
    let (mut vmm, completed) = stall_on_display_write(false);
    let started = std::time::Instant::now();

    // The guest keeps flushing while nobody reads the display socket.
    for _ in 0..5 {
        vmm.ok(&wire::resource_flush(1, Rect::new(0, 0, 1280, 800)));
    }
    let took = started.elapsed();
    // The frontend reads again: the display is served again.
    vmm.display.as_ref().expect("display").set_paused(false);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let from = vmm.display_mark();
    vmm.ok(&wire::resource_flush(1, Rect::new(0, 0, 16, 16)));
    vmm.display_mark();

    assert!(completed, "the flush waited for the stalled display");
    assert!(took < std::time::Duration::from_secs(2), "{took:?}");
    let updates = updates_until(&vmm, from, |m| matches!(m, DisplayMsg::CursorPos { .. }));
    assert!(!updates.is_empty(), "no update after the display resumed");
}

#[test]
fn test_scanout_larger_than_the_announced_display_is_clipped() {
    let mut opts = VmmOptions::new(&[]);
    opts.display_size = Some((64, 32));
    let mut vmm = TestVmm::start_with(opts);
    vmm.create_backed_2d(1, 128, 64, &[entry(DATA_BASE, 128 * 64 * 4)]);
    let from = vmm.display_mark();

    vmm.ok(&wire::set_scanout(0, 1, Rect::new(0, 0, 128, 64)));
    vmm.ok(&wire::resource_flush(1, Rect::new(0, 0, 128, 64)));
    vmm.display_mark();

    let display = vmm.display.as_ref().expect("display");
    let messages = display.messages()[from..].to_vec();
    assert!(messages.iter().any(|m| matches!(
        m,
        DisplayMsg::Scanout {
            scanout_id: 0,
            width: 64,
            height: 32
        }
    )));
    for m in &messages {
        if let DisplayMsg::Update { rect, .. } = m {
            assert!(
                rect.x + rect.width <= 64 && rect.y + rect.height <= 32,
                "{rect:?}"
            );
        }
    }
}
