//! One test per virtio-gpu command: the daemon binary, driven over a real
//! vhost-user socket, answers each well-formed command with the right
//! response type, length and content.

use crate::common::wire::{self, Rect};
use crate::common::{
    entry, page_entries, pattern, DisplayMsg, TestVmm, VmmOptions, CTRL_Q, CURSOR_Q, DATA_BASE,
    PAGE,
};

/// Display size passed on the command line in these tests.
const W: u32 = 1024;
const H: u32 = 768;

fn start() -> TestVmm {
    TestVmm::start(&["--width", "1024", "--height", "768"])
}

fn start_blob() -> TestVmm {
    TestVmm::start(&["--width", "1024", "--height", "768", "--blob"])
}

#[test]
fn test_get_display_info_default_output_reports_configured_size() {
    let mut vmm = start();

    let resp = vmm.send(
        CTRL_Q,
        &wire::get_display_info(),
        wire::RESP_DISPLAY_INFO_SIZE as u32,
    );

    assert_eq!(resp.type_(), wire::RESP_OK_DISPLAY_INFO);
    assert_eq!(resp.used_len as usize, wire::RESP_DISPLAY_INFO_SIZE);
    let b = &resp.bytes;
    // pmodes[0] = { rect { x, y, width, height }, enabled, flags } at offset 24.
    assert_eq!(
        (
            wire::le32(b, 24),
            wire::le32(b, 28),
            wire::le32(b, 32),
            wire::le32(b, 36)
        ),
        (0, 0, W, H)
    );
    assert_eq!(wire::le32(b, 40), 1, "scanout 0 enabled");
    assert_eq!(
        wire::le32(b, 24 + 24 + 16),
        0,
        "scanout 1 disabled with one output"
    );
}

#[test]
fn test_get_edid_scanout_zero_returns_edid_block() {
    let mut vmm = start();
    assert!(
        vmm.features & wire::VIRTIO_GPU_F_EDID != 0,
        "daemon must offer VIRTIO_GPU_F_EDID"
    );

    let resp = vmm.send(CTRL_Q, &wire::get_edid(0), wire::RESP_EDID_SIZE as u32);

    assert_eq!(resp.type_(), wire::RESP_OK_EDID);
    assert_eq!(resp.used_len as usize, wire::RESP_EDID_SIZE);
    let size = wire::le32(&resp.bytes, 24);
    assert!(
        (128..=1024).contains(&size) && size.is_multiple_of(128),
        "edid size {size}"
    );
    assert_eq!(
        &resp.bytes[32..40],
        &[0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]
    );
}

#[test]
fn test_get_edid_invalid_scanout_returns_invalid_parameter() {
    let mut vmm = start();

    let resp = vmm.send(CTRL_Q, &wire::get_edid(16), wire::RESP_EDID_SIZE as u32);

    assert_eq!(resp.type_(), wire::RESP_ERR_INVALID_PARAMETER);
}

#[test]
fn test_resource_create_2d_valid_returns_ok_nodata() {
    let mut vmm = start();

    let resp = vmm.ctrl(&wire::resource_create_2d(
        1,
        wire::FORMAT_B8G8R8A8_UNORM,
        64,
        64,
    ));

    assert_eq!(resp.type_(), wire::RESP_OK_NODATA);
    assert_eq!(resp.used_len as usize, wire::HDR_SIZE);
}

#[test]
fn test_resource_unref_existing_frees_id_for_reuse() {
    let mut vmm = start();
    vmm.ok(&wire::resource_create_2d(
        1,
        wire::FORMAT_B8G8R8A8_UNORM,
        64,
        64,
    ));

    let unref = vmm.ctrl_type(&wire::resource_unref(1));
    let recreate = vmm.ctrl_type(&wire::resource_create_2d(
        1,
        wire::FORMAT_B8G8R8A8_UNORM,
        8,
        8,
    ));

    assert_eq!(unref, wire::RESP_OK_NODATA);
    assert_eq!(recreate, wire::RESP_OK_NODATA);
}

#[test]
fn test_resource_attach_backing_valid_entries_returns_ok() {
    let mut vmm = start();
    vmm.ok(&wire::resource_create_2d(
        1,
        wire::FORMAT_B8G8R8A8_UNORM,
        64,
        64,
    ));

    let resp = vmm.ctrl(&wire::attach_backing(1, &page_entries(DATA_BASE, 4)));

    assert_eq!(resp.type_(), wire::RESP_OK_NODATA);
    assert_eq!(resp.used_len as usize, wire::HDR_SIZE);
}

#[test]
fn test_resource_detach_backing_attached_returns_ok() {
    let mut vmm = start();
    vmm.create_backed_2d(1, 64, 64, &page_entries(DATA_BASE, 4));

    let resp = vmm.ctrl(&wire::detach_backing(1));

    assert_eq!(resp.type_(), wire::RESP_OK_NODATA);
}

#[test]
fn test_transfer_to_host_2d_backed_resource_returns_ok() {
    let mut vmm = start();
    vmm.create_backed_2d(1, 64, 64, &page_entries(DATA_BASE, 4));

    let resp = vmm.ctrl(&wire::transfer_to_host_2d(1, Rect::new(0, 0, 64, 64), 0));

    assert_eq!(resp.type_(), wire::RESP_OK_NODATA);
}

#[test]
fn test_set_scanout_valid_resource_sends_scanout_to_display() {
    let mut vmm = start();
    vmm.create_backed_2d(1, 64, 32, &page_entries(DATA_BASE, 2));

    let resp = vmm.ctrl(&wire::set_scanout(0, 1, Rect::new(0, 0, 64, 32)));

    assert_eq!(resp.type_(), wire::RESP_OK_NODATA);
    let display = vmm.display.as_ref().expect("display");
    let (_, msg) = display.wait_for(0, |m| matches!(m, DisplayMsg::Scanout { .. }));
    assert_eq!(
        msg,
        DisplayMsg::Scanout {
            scanout_id: 0,
            width: 64,
            height: 32
        }
    );
}

#[test]
fn test_set_scanout_resource_zero_disables_scanout() {
    let mut vmm = start();
    vmm.create_backed_2d(1, 64, 32, &page_entries(DATA_BASE, 2));
    vmm.ok(&wire::set_scanout(0, 1, Rect::new(0, 0, 64, 32)));

    let resp = vmm.ctrl(&wire::set_scanout(0, 0, Rect::new(0, 0, 0, 0)));

    assert_eq!(resp.type_(), wire::RESP_OK_NODATA);
    // With the scanout disabled the resource is no longer in use.
    assert_eq!(
        vmm.ctrl_type(&wire::resource_unref(1)),
        wire::RESP_OK_NODATA
    );
}

#[test]
fn test_resource_flush_scanned_out_resource_sends_transferred_pixels() {
    let mut vmm = start();
    // 16x16 BGRA = 1024 bytes, one page of backing.
    vmm.create_backed_2d(1, 16, 16, &[entry(DATA_BASE, 1024)]);
    vmm.ok(&wire::set_scanout(0, 1, Rect::new(0, 0, 16, 16)));
    // New content after the scanout was set: only the flush can show it.
    let pixels = pattern(7, 16 * 16 * 4);
    vmm.write_guest(DATA_BASE, &pixels);
    vmm.ok(&wire::transfer_to_host_2d(1, Rect::new(0, 0, 16, 16), 0));
    let from = vmm.display_mark();

    let resp = vmm.ctrl(&wire::resource_flush(1, Rect::new(0, 0, 16, 16)));

    assert_eq!(resp.type_(), wire::RESP_OK_NODATA);
    let display = vmm.display.as_ref().expect("display");
    let (_, msg) = display.wait_for(from, |m| matches!(m, DisplayMsg::Update { .. }));
    assert_eq!(
        msg,
        DisplayMsg::Update {
            scanout_id: 0,
            rect: Rect::new(0, 0, 16, 16),
            data: pixels
        }
    );
}

#[test]
fn test_transfer_to_host_2d_sub_rect_with_offset_updates_only_that_rect() {
    let mut vmm = start();
    // 8x8 resource, stride 32 bytes. First upload zeros, then a 2x2 rect at
    // (3, 4) whose source offset is 4 * 32 + 3 * 4 in the backing.
    let mut backing = vec![0u8; 8 * 8 * 4];
    vmm.write_guest(DATA_BASE, &backing);
    vmm.create_backed_2d(1, 8, 8, &[entry(DATA_BASE, 256)]);
    vmm.ok(&wire::transfer_to_host_2d(1, Rect::new(0, 0, 8, 8), 0));
    for (row, col) in [(4usize, 3usize), (4, 4), (5, 3), (5, 4)] {
        let off = row * 32 + col * 4;
        backing[off..off + 4].copy_from_slice(&[0x11, 0x22, 0x33, 0x44]);
    }
    vmm.write_guest(DATA_BASE, &backing);

    let resp = vmm.ctrl(&wire::transfer_to_host_2d(
        1,
        Rect::new(3, 4, 2, 2),
        4 * 32 + 3 * 4,
    ));
    vmm.ok(&wire::set_scanout(0, 1, Rect::new(0, 0, 8, 8)));
    let from = vmm.display_mark();
    vmm.ok(&wire::resource_flush(1, Rect::new(0, 0, 8, 8)));

    assert_eq!(resp.type_(), wire::RESP_OK_NODATA);
    let display = vmm.display.as_ref().expect("display");
    let (_, msg) = display.wait_for(from, |m| matches!(m, DisplayMsg::Update { .. }));
    let DisplayMsg::Update { data, .. } = msg else {
        unreachable!()
    };
    assert_eq!(data, backing);
}

#[test]
fn test_get_capset_info_2d_device_has_no_capsets() {
    let mut vmm = start();

    let resp = vmm.ctrl(&wire::get_capset_info(0));

    assert_eq!(resp.type_(), wire::RESP_ERR_INVALID_PARAMETER);
}

#[test]
fn test_get_capset_unknown_capset_returns_error() {
    let mut vmm = start();

    // Capset id 1 is VIRTIO_GPU_CAPSET_VIRGL, which a 2D device does not
    // have. The spec names no code for this; QEMU answers ERR_UNSPEC.
    let resp = vmm.ctrl(&wire::get_capset(1, 1));

    assert!(
        [wire::RESP_ERR_UNSPEC, wire::RESP_ERR_INVALID_PARAMETER].contains(&resp.type_()),
        "answered {:#x}",
        resp.type_()
    );
    assert_eq!(resp.used_len as usize, wire::HDR_SIZE);
}

#[test]
fn test_resource_assign_uuid_existing_resource_returns_distinct_uuids() {
    let mut vmm = start();
    assert!(
        vmm.features & wire::VIRTIO_GPU_F_RESOURCE_UUID != 0,
        "daemon must offer RESOURCE_UUID"
    );
    vmm.ok(&wire::resource_create_2d(
        1,
        wire::FORMAT_B8G8R8A8_UNORM,
        8,
        8,
    ));
    vmm.ok(&wire::resource_create_2d(
        2,
        wire::FORMAT_B8G8R8A8_UNORM,
        8,
        8,
    ));

    let a = vmm.send(CTRL_Q, &wire::resource_assign_uuid(1), 40);
    let b = vmm.send(CTRL_Q, &wire::resource_assign_uuid(2), 40);

    assert_eq!(a.type_(), wire::RESP_OK_RESOURCE_UUID);
    assert_eq!(a.used_len, 40);
    assert_eq!(b.type_(), wire::RESP_OK_RESOURCE_UUID);
    assert_ne!(a.bytes[24..40], b.bytes[24..40]);
    assert_ne!(a.bytes[24..40], [0u8; 16]);
}

#[test]
fn test_resource_assign_uuid_unknown_resource_returns_invalid_resource_id() {
    let mut vmm = start();

    let resp = vmm.send(CTRL_Q, &wire::resource_assign_uuid(9), 40);

    assert_eq!(resp.type_(), wire::RESP_ERR_INVALID_RESOURCE_ID);
}

#[test]
fn test_resource_create_blob_with_entries_returns_ok() {
    let mut vmm = start_blob();
    assert!(
        vmm.features & wire::VIRTIO_GPU_F_RESOURCE_BLOB != 0,
        "--blob must offer RESOURCE_BLOB"
    );

    let resp = vmm.ctrl(&wire::resource_create_blob(
        1,
        wire::BLOB_MEM_GUEST,
        wire::BLOB_FLAG_USE_SHAREABLE,
        4 * PAGE,
        &page_entries(DATA_BASE, 4),
    ));

    assert_eq!(resp.type_(), wire::RESP_OK_NODATA);
}

#[test]
fn test_resource_create_blob_without_entries_accepts_later_attach() {
    let mut vmm = start_blob();

    let create = vmm.ctrl_type(&wire::resource_create_blob(
        1,
        wire::BLOB_MEM_GUEST,
        wire::BLOB_FLAG_USE_SHAREABLE,
        4 * PAGE,
        &[],
    ));
    let attach = vmm.ctrl_type(&wire::attach_backing(1, &page_entries(DATA_BASE, 4)));

    assert_eq!(create, wire::RESP_OK_NODATA);
    assert_eq!(attach, wire::RESP_OK_NODATA);
}

#[test]
fn test_resource_create_blob_without_blob_feature_is_rejected() {
    let mut vmm = start();
    assert_eq!(
        vmm.features & wire::VIRTIO_GPU_F_RESOURCE_BLOB,
        0,
        "blob offered without --blob"
    );

    let resp = vmm.ctrl(&wire::resource_create_blob(
        1,
        wire::BLOB_MEM_GUEST,
        0,
        PAGE,
        &page_entries(DATA_BASE, 1),
    ));

    assert!(
        (wire::RESP_ERR_UNSPEC..=wire::RESP_ERR_INVALID_PARAMETER).contains(&resp.type_()),
        "got {:#x}",
        resp.type_()
    );
    vmm.assert_alive();
}

#[test]
fn test_set_scanout_blob_backed_blob_displays_guest_pixels_on_flush() {
    let mut vmm = start_blob();
    // 32x32 XRGB blob, stride 128, 4096 bytes = one page.
    vmm.ok(&wire::resource_create_blob(
        1,
        wire::BLOB_MEM_GUEST,
        wire::BLOB_FLAG_USE_SHAREABLE,
        PAGE,
        &page_entries(DATA_BASE, 1),
    ));

    let resp = vmm.ctrl(&wire::set_scanout_blob(
        0,
        1,
        Rect::new(0, 0, 32, 32),
        (32, 32, wire::FORMAT_B8G8R8X8_UNORM, 128),
    ));
    // The guest draws into the blob after the scanout was set.
    let pixels = pattern(3, 32 * 32 * 4);
    vmm.write_guest(DATA_BASE, &pixels);
    let from = vmm.display_mark();
    vmm.ok(&wire::resource_flush(1, Rect::new(0, 0, 32, 32)));

    assert_eq!(resp.type_(), wire::RESP_OK_NODATA);
    let display = vmm.display.as_ref().expect("display");
    let (_, scanout) = display.wait_for(0, |m| matches!(m, DisplayMsg::Scanout { .. }));
    assert_eq!(
        scanout,
        DisplayMsg::Scanout {
            scanout_id: 0,
            width: 32,
            height: 32
        }
    );
    let (_, update) = display.wait_for(from, |m| matches!(m, DisplayMsg::Update { .. }));
    let DisplayMsg::Update { data, .. } = update else {
        unreachable!()
    };
    assert_eq!(data, pixels);
}

#[test]
fn test_update_cursor_backed_cursor_sends_image_to_display() {
    let mut vmm = start();
    let image = pattern(9, (wire::CURSOR_SIDE * wire::CURSOR_SIDE * 4) as usize);
    vmm.write_guest(DATA_BASE, &image);
    vmm.create_backed_2d(5, 64, 64, &page_entries(DATA_BASE, 4));
    vmm.ok(&wire::transfer_to_host_2d(5, Rect::new(0, 0, 64, 64), 0));

    // Like Linux, cursor commands carry no response buffer.
    let resp = vmm.send_segments(
        CURSOR_Q,
        &[&wire::update_cursor(0, 100, 50, 5, (3, 4))],
        &[],
    );

    assert_eq!(resp.used_len, 0);
    let display = vmm.display.as_ref().expect("display");
    let (_, msg) = display.wait_for(0, |m| matches!(m, DisplayMsg::CursorUpdate { .. }));
    assert_eq!(
        msg,
        DisplayMsg::CursorUpdate {
            scanout_id: 0,
            x: 100,
            y: 50,
            hot: (3, 4),
            data: image
        }
    );
}

#[test]
fn test_move_cursor_position_sends_cursor_pos_to_display() {
    let mut vmm = start();
    vmm.create_backed_2d(5, 64, 64, &page_entries(DATA_BASE, 4));

    let resp = vmm.send_segments(CURSOR_Q, &[&wire::move_cursor(0, 200, 150, 5)], &[]);

    assert_eq!(resp.used_len, 0);
    let display = vmm.display.as_ref().expect("display");
    let (_, msg) = display.wait_for(0, |m| matches!(m, DisplayMsg::CursorPos { .. }));
    assert_eq!(
        msg,
        DisplayMsg::CursorPos {
            scanout_id: 0,
            x: 200,
            y: 150
        }
    );
}

#[test]
fn test_move_cursor_resource_zero_hides_cursor() {
    let mut vmm = start();

    vmm.send_segments(CURSOR_Q, &[&wire::move_cursor(0, 10, 10, 0)], &[]);

    let display = vmm.display.as_ref().expect("display");
    let (_, msg) = display.wait_for(0, |m| matches!(m, DisplayMsg::CursorHide { .. }));
    assert_eq!(msg, DisplayMsg::CursorHide { scanout_id: 0 });
}

#[test]
fn test_detach_backing_fenced_echoes_fence_and_context() {
    let mut vmm = start();
    vmm.create_backed_2d(1, 64, 64, &page_entries(DATA_BASE, 4));

    let resp = vmm.ctrl(&wire::with_fence(
        wire::detach_backing(1),
        0x1234_5678_9abc,
        7,
    ));

    assert_eq!(resp.type_(), wire::RESP_OK_NODATA);
    assert_ne!(resp.flags() & wire::FLAG_FENCE, 0, "FLAG_FENCE echoed");
    assert_eq!(resp.fence_id(), 0x1234_5678_9abc);
    assert_eq!(resp.ctx_id(), 7);
}

#[test]
fn test_request_split_across_descriptors_is_reassembled() {
    let mut vmm = start();
    let req = wire::resource_create_2d(1, wire::FORMAT_B8G8R8A8_UNORM, 64, 64);

    // Header and body in separate readable descriptors, as virtio allows.
    let resp = vmm.send_segments(
        CTRL_Q,
        &[&req[..wire::HDR_SIZE], &req[wire::HDR_SIZE..]],
        &[64],
    );

    assert_eq!(resp.type_(), wire::RESP_OK_NODATA);
    assert_eq!(
        vmm.ctrl_type(&wire::attach_backing(1, &page_entries(DATA_BASE, 4))),
        wire::RESP_OK_NODATA
    );
}

#[test]
fn test_set_scanout_resource_zero_sends_disabled_scanout_to_display() {
    let mut vmm = start();
    vmm.create_backed_2d(1, 64, 32, &page_entries(DATA_BASE, 2));
    vmm.ok(&wire::set_scanout(0, 1, Rect::new(0, 0, 64, 32)));

    vmm.ok(&wire::set_scanout(0, 0, Rect::new(0, 0, 0, 0)));

    let display = vmm.display.as_ref().expect("display");
    let (_, msg) = display.wait_for(0, |m| matches!(m, DisplayMsg::Scanout { width: 0, .. }));
    assert_eq!(
        msg,
        DisplayMsg::Scanout {
            scanout_id: 0,
            width: 0,
            height: 0
        }
    );
}

#[test]
fn test_resource_flush_sub_rect_sends_only_that_rect() {
    let mut vmm = start();
    // 16x16 resource; flush the 4x2 rect at (5, 3).
    let pixels = pattern(21, 16 * 16 * 4);
    vmm.write_guest(DATA_BASE, &pixels);
    vmm.create_backed_2d(1, 16, 16, &[entry(DATA_BASE, 1024)]);
    vmm.ok(&wire::transfer_to_host_2d(1, Rect::new(0, 0, 16, 16), 0));
    vmm.ok(&wire::set_scanout(0, 1, Rect::new(0, 0, 16, 16)));
    let from = vmm.display_mark();

    vmm.ok(&wire::resource_flush(1, Rect::new(5, 3, 4, 2)));

    let mut expected = Vec::new();
    for row in 3..5 {
        let start = row * 64 + 5 * 4;
        expected.extend_from_slice(&pixels[start..start + 16]);
    }
    let display = vmm.display.as_ref().expect("display");
    let (_, msg) = display.wait_for(from, |m| matches!(m, DisplayMsg::Update { .. }));
    assert_eq!(
        msg,
        DisplayMsg::Update {
            scanout_id: 0,
            rect: Rect::new(5, 3, 4, 2),
            data: expected
        }
    );
}

#[test]
fn test_resource_flush_not_scanned_out_sends_no_update() {
    let mut vmm = start();
    vmm.create_backed_2d(1, 16, 16, &[entry(DATA_BASE, 1024)]);
    vmm.create_backed_2d(2, 8, 8, &[entry(DATA_BASE + PAGE, 256)]);

    let resp = vmm.ctrl(&wire::resource_flush(1, Rect::new(0, 0, 16, 16)));
    // A later scanout message orders the display stream after the flush.
    vmm.ok(&wire::set_scanout(0, 2, Rect::new(0, 0, 8, 8)));

    assert_eq!(resp.type_(), wire::RESP_OK_NODATA);
    let display = vmm.display.as_ref().expect("display");
    let (idx, _) = display.wait_for(0, |m| matches!(m, DisplayMsg::Scanout { width: 8, .. }));
    let msgs = display.messages();
    assert!(
        !msgs[..idx]
            .iter()
            .any(|m| matches!(m, DisplayMsg::Update { .. })),
        "update for a resource on no scanout: {msgs:?}"
    );
}

#[test]
fn test_get_edid_with_display_frontend_returns_frontend_block() {
    let mut vmm = start();

    let resp = vmm.send(CTRL_Q, &wire::get_edid(0), wire::RESP_EDID_SIZE as u32);

    assert_eq!(resp.type_(), wire::RESP_OK_EDID);
    assert_eq!(wire::le32(&resp.bytes, 24), 128);
    assert_eq!(
        &resp.bytes[32..160],
        &crate::common::display::frontend_edid()[..]
    );
}

#[test]
fn test_get_edid_headless_describes_configured_mode_with_valid_checksum() {
    let mut opts = VmmOptions::new(&["--width", "1024", "--height", "768"]);
    opts.display = false;
    let mut vmm = TestVmm::start_with(opts);

    let resp = vmm.send(CTRL_Q, &wire::get_edid(0), wire::RESP_EDID_SIZE as u32);

    assert_eq!(resp.type_(), wire::RESP_OK_EDID);
    let edid = &resp.bytes[32..160];
    assert_eq!(&edid[..8], &[0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]);
    assert_eq!(
        edid.iter().fold(0u8, |a, b| a.wrapping_add(*b)),
        0,
        "checksum"
    );
    // First detailed timing descriptor (byte 54): active pixels.
    let h = u32::from(edid[56]) | (u32::from(edid[58] & 0xf0) << 4);
    let v = u32::from(edid[59]) | (u32::from(edid[61] & 0xf0) << 4);
    assert_eq!((h, v), (W, H));
}

#[test]
fn test_detach_backing_fenced_error_still_echoes_fence() {
    let mut vmm = start();

    // A guest waiting on this fence would hang if the error dropped it.
    let resp = vmm.ctrl(&wire::with_fence(wire::detach_backing(404), 0xfeed, 0));

    assert_eq!(resp.type_(), wire::RESP_ERR_INVALID_RESOURCE_ID);
    assert_ne!(
        resp.flags() & wire::FLAG_FENCE,
        0,
        "FLAG_FENCE echoed on error"
    );
    assert_eq!(resp.fence_id(), 0xfeed);
}

#[test]
fn test_resource_unref_of_old_and_shown_scanout_resources_both_succeed() {
    let mut vmm = start();
    vmm.create_backed_2d(1, 16, 16, &[entry(DATA_BASE, 1024)]);
    vmm.create_backed_2d(2, 16, 16, &[entry(DATA_BASE + PAGE, 1024)]);
    vmm.ok(&wire::set_scanout(0, 1, Rect::new(0, 0, 16, 16)));
    vmm.ok(&wire::set_scanout(0, 2, Rect::new(0, 0, 16, 16)));

    let unref_old = vmm.ctrl_type(&wire::resource_unref(1));
    let unref_shown = vmm.ctrl_type(&wire::resource_unref(2));

    assert_eq!(unref_old, wire::RESP_OK_NODATA);
    // Unref of the shown resource succeeds too and disables the scanout.
    assert_eq!(unref_shown, wire::RESP_OK_NODATA);
    assert_eq!(vmm.metric("vugpu_resources"), 0.0);
}

#[test]
fn test_display_socket_closed_by_frontend_continues_headless() {
    let mut vmm = start();
    vmm.create_backed_2d(1, 16, 16, &[entry(DATA_BASE, 1024)]);

    // The VMM's display side goes away (window closed, QEMU chardev reset).
    vmm.display = None;
    let scanout = vmm.ctrl_type(&wire::set_scanout(0, 1, Rect::new(0, 0, 16, 16)));
    let flush = vmm.ctrl_type(&wire::resource_flush(1, Rect::new(0, 0, 16, 16)));
    let cursor = vmm.send_segments(CURSOR_Q, &[&wire::move_cursor(0, 1, 1, 1)], &[]);

    assert_eq!(scanout, wire::RESP_OK_NODATA);
    assert_eq!(flush, wire::RESP_OK_NODATA);
    assert_eq!(cursor.used_len, 0);
    vmm.assert_alive();
}
