//! Malformed and hostile guest input: every case gets the right error
//! response and the daemon keeps serving (a following GET_DISPLAY_INFO
//! still answers).

use std::os::fd::AsRawFd;

use crate::common::wire::{self, Rect};
use crate::common::{
    entry, page_entries, DisplayMsg, TestVmm, CTRL_Q, CURSOR_Q, DATA_BASE, MEM_SIZE, PAGE,
};

fn start() -> TestVmm {
    TestVmm::start(&[])
}

/// Sends `req`, asserts the response type and that the daemon still serves.
fn expect_error(vmm: &mut TestVmm, req: &[u8], expected: u32) {
    let resp = vmm.ctrl(req);
    assert_eq!(
        resp.type_(),
        expected,
        "request {:02x?} answered {:#x}, expected {expected:#x}",
        &req[..req.len().min(64)],
        resp.type_()
    );
    assert_eq!(
        resp.used_len as usize,
        wire::HDR_SIZE,
        "error response length"
    );
    vmm.assert_alive();
}

/// A 64x64 BGRA resource (16 KiB, four pages) without backing.
fn create_64(vmm: &mut TestVmm, id: u32) {
    vmm.ok(&wire::resource_create_2d(
        id,
        wire::FORMAT_B8G8R8A8_UNORM,
        64,
        64,
    ));
}

#[test]
fn test_unknown_command_type_returns_unspec() {
    let mut vmm = start();
    let before = vmm.metric(r#"vugpu_commands_total{cmd="unknown"}"#);

    // 0x0999 is not a virtio-gpu command.
    expect_error(&mut vmm, &wire::ctrl_hdr(0x0999), wire::RESP_ERR_UNSPEC);

    assert_eq!(
        vmm.metric(r#"vugpu_commands_total{cmd="unknown"}"#),
        before + 1.0
    );
}

#[test]
fn test_3d_command_on_2d_device_returns_unspec() {
    let mut vmm = start();

    // VIRTIO_GPU_CMD_CTX_CREATE (0x0200) with a zeroed body: no 3D here.
    let mut req = wire::ctrl_hdr(0x0200);
    req.resize(wire::HDR_SIZE + 72, 0);

    expect_error(&mut vmm, &req, wire::RESP_ERR_UNSPEC);
}

#[test]
fn test_chain_shorter_than_header_returns_unspec_and_counts_decode_error() {
    let mut vmm = start();
    let before = vmm.metric("vugpu_decode_errors_total");

    let resp = vmm.send(CTRL_Q, &wire::get_display_info()[..10], 64);

    assert_eq!(resp.type_(), wire::RESP_ERR_UNSPEC);
    assert_eq!(vmm.metric("vugpu_decode_errors_total"), before + 1.0);
    vmm.assert_alive();
}

#[test]
fn test_chain_shorter_than_struct_returns_error() {
    let mut vmm = start();

    // RESOURCE_CREATE_2D header with only 8 of its 16 body bytes.
    let req = wire::resource_create_2d(1, wire::FORMAT_B8G8R8A8_UNORM, 64, 64);

    expect_error(&mut vmm, &req[..wire::HDR_SIZE + 8], wire::RESP_ERR_UNSPEC);
    // Nothing was created from the partial request.
    assert_eq!(
        vmm.ctrl_type(&wire::resource_unref(1)),
        wire::RESP_ERR_INVALID_RESOURCE_ID
    );
}

#[test]
fn test_response_buffer_too_small_for_display_info_completes_chain() {
    let mut vmm = start();

    // GET_DISPLAY_INFO needs 408 bytes; offer only a header's worth.
    let resp = vmm.send(CTRL_Q, &wire::get_display_info(), wire::HDR_SIZE as u32);

    assert!(resp.used_len as usize <= wire::HDR_SIZE);
    assert_ne!(
        resp.type_(),
        wire::RESP_OK_DISPLAY_INFO,
        "a truncated OK is a lie"
    );
    vmm.assert_alive();
}

#[test]
fn test_control_chain_without_response_buffer_completes_with_zero_length() {
    let mut vmm = start();

    let resp = vmm.send_segments(CTRL_Q, &[&wire::get_display_info()], &[]);

    assert_eq!(resp.used_len, 0);
    vmm.assert_alive();
}

#[test]
fn test_attach_backing_zero_entries_returns_invalid_parameter() {
    let mut vmm = start();
    create_64(&mut vmm, 1);

    expect_error(
        &mut vmm,
        &wire::attach_backing(1, &[]),
        wire::RESP_ERR_INVALID_PARAMETER,
    );
}

#[test]
fn test_attach_backing_more_entries_than_cap_returns_invalid_parameter() {
    let mut vmm = TestVmm::start(&["--max-backing-entries", "8"]);
    create_64(&mut vmm, 1);

    // Nine 2 KiB entries: 18 KiB would cover the resource, but 9 > 8.
    let entries: Vec<_> = (0..9).map(|i| entry(DATA_BASE + i * 2048, 2048)).collect();

    expect_error(
        &mut vmm,
        &wire::attach_backing(1, &entries),
        wire::RESP_ERR_INVALID_PARAMETER,
    );
}

#[test]
fn test_attach_backing_entries_at_cap_is_accepted() {
    let mut vmm = TestVmm::start(&["--max-backing-entries", "8"]);
    create_64(&mut vmm, 1);

    let entries: Vec<_> = (0..8).map(|i| entry(DATA_BASE + i * 2048, 2048)).collect();

    assert_eq!(
        vmm.ctrl_type(&wire::attach_backing(1, &entries)),
        wire::RESP_OK_NODATA
    );
}

#[test]
fn test_attach_backing_zero_length_entry_returns_invalid_parameter() {
    let mut vmm = start();
    create_64(&mut vmm, 1);
    let mut entries = page_entries(DATA_BASE, 4);
    entries.push(entry(DATA_BASE + 4 * PAGE, 0));

    expect_error(
        &mut vmm,
        &wire::attach_backing(1, &entries),
        wire::RESP_ERR_INVALID_PARAMETER,
    );
}

#[test]
fn test_attach_backing_overflowing_range_returns_invalid_parameter() {
    let mut vmm = start();
    create_64(&mut vmm, 1);

    // addr + length wraps around 2^64.
    let req = wire::attach_backing(1, &[entry(u64::MAX - 0xfff, 0x4000)]);

    expect_error(&mut vmm, &req, wire::RESP_ERR_INVALID_PARAMETER);
}

#[test]
fn test_attach_backing_outside_guest_memory_returns_invalid_parameter() {
    let mut vmm = start();
    create_64(&mut vmm, 1);

    let req = wire::attach_backing(1, &page_entries(MEM_SIZE, 4));

    expect_error(&mut vmm, &req, wire::RESP_ERR_INVALID_PARAMETER);
}

#[test]
fn test_attach_backing_straddling_end_of_memory_returns_invalid_parameter() {
    let mut vmm = start();
    create_64(&mut vmm, 1);

    // Starts 8 KiB before the end of RAM, runs 16 KiB.
    let req = wire::attach_backing(1, &[entry(MEM_SIZE - 2 * PAGE, 4 * PAGE as u32)]);

    expect_error(&mut vmm, &req, wire::RESP_ERR_INVALID_PARAMETER);
}

#[test]
fn test_attach_backing_not_covering_resource_returns_invalid_parameter() {
    let mut vmm = start();
    create_64(&mut vmm, 1);

    // One page for a four-page resource.
    expect_error(
        &mut vmm,
        &wire::attach_backing(1, &page_entries(DATA_BASE, 1)),
        wire::RESP_ERR_INVALID_PARAMETER,
    );
}

#[test]
fn test_attach_backing_huge_nr_entries_short_chain_is_rejected() {
    let mut vmm = start();
    create_64(&mut vmm, 1);

    // Claims 2^32 - 1 entries, carries one: must not allocate or die.
    let req = wire::attach_backing_raw(1, u32::MAX, &page_entries(DATA_BASE, 1));
    let resp = vmm.ctrl(&req);

    assert!(
        [wire::RESP_ERR_INVALID_PARAMETER, wire::RESP_ERR_UNSPEC].contains(&resp.type_()),
        "answered {:#x}",
        resp.type_()
    );
    vmm.assert_alive();
}

#[test]
fn test_attach_backing_on_attached_resource_returns_unspec() {
    let mut vmm = start();
    create_64(&mut vmm, 1);
    vmm.ok(&wire::attach_backing(1, &page_entries(DATA_BASE, 4)));

    expect_error(
        &mut vmm,
        &wire::attach_backing(1, &page_entries(DATA_BASE + 0x10_0000, 4)),
        wire::RESP_ERR_UNSPEC,
    );
}

#[test]
fn test_detach_backing_without_backing_returns_unspec() {
    let mut vmm = start();
    create_64(&mut vmm, 1);

    expect_error(&mut vmm, &wire::detach_backing(1), wire::RESP_ERR_UNSPEC);
}

#[test]
fn test_detach_backing_unknown_resource_returns_invalid_resource_id() {
    let mut vmm = start();

    expect_error(
        &mut vmm,
        &wire::detach_backing(77),
        wire::RESP_ERR_INVALID_RESOURCE_ID,
    );
}

#[test]
fn test_attach_backing_unknown_resource_returns_invalid_resource_id() {
    let mut vmm = start();

    expect_error(
        &mut vmm,
        &wire::attach_backing(77, &page_entries(DATA_BASE, 4)),
        wire::RESP_ERR_INVALID_RESOURCE_ID,
    );
}

#[test]
fn test_resource_create_2d_id_zero_returns_invalid_resource_id() {
    let mut vmm = start();

    expect_error(
        &mut vmm,
        &wire::resource_create_2d(0, wire::FORMAT_B8G8R8A8_UNORM, 64, 64),
        wire::RESP_ERR_INVALID_RESOURCE_ID,
    );
}

#[test]
fn test_resource_create_2d_id_in_use_returns_invalid_resource_id() {
    let mut vmm = start();
    create_64(&mut vmm, 1);

    expect_error(
        &mut vmm,
        &wire::resource_create_2d(1, wire::FORMAT_B8G8R8A8_UNORM, 32, 32),
        wire::RESP_ERR_INVALID_RESOURCE_ID,
    );
}

#[test]
fn test_resource_create_2d_zero_width_returns_invalid_parameter() {
    let mut vmm = start();

    expect_error(
        &mut vmm,
        &wire::resource_create_2d(1, wire::FORMAT_B8G8R8A8_UNORM, 0, 64),
        wire::RESP_ERR_INVALID_PARAMETER,
    );
}

#[test]
fn test_resource_create_2d_zero_height_returns_invalid_parameter() {
    let mut vmm = start();

    expect_error(
        &mut vmm,
        &wire::resource_create_2d(1, wire::FORMAT_B8G8R8A8_UNORM, 64, 0),
        wire::RESP_ERR_INVALID_PARAMETER,
    );
}

#[test]
fn test_resource_create_2d_oversized_width_returns_invalid_parameter() {
    let mut vmm = start();

    // 16385 x 1 is tiny in bytes but wider than any scanout (16384 max).
    expect_error(
        &mut vmm,
        &wire::resource_create_2d(1, wire::FORMAT_B8G8R8A8_UNORM, 16385, 1),
        wire::RESP_ERR_INVALID_PARAMETER,
    );
}

#[test]
fn test_resource_create_2d_byte_count_overflowing_u32_is_rejected() {
    let mut vmm = start();

    // 0x8000_0000 * 4 * 2 overflows u32 in every intermediate product.
    let resp = vmm.ctrl(&wire::resource_create_2d(
        1,
        wire::FORMAT_B8G8R8A8_UNORM,
        0x8000_0000,
        2,
    ));

    assert!(
        [
            wire::RESP_ERR_INVALID_PARAMETER,
            wire::RESP_ERR_OUT_OF_MEMORY
        ]
        .contains(&resp.type_()),
        "answered {:#x}",
        resp.type_()
    );
    vmm.assert_alive();
}

#[test]
fn test_resource_create_2d_unknown_format_returns_invalid_parameter() {
    let mut vmm = start();

    // Format 5 is not defined by the virtio spec.
    expect_error(
        &mut vmm,
        &wire::resource_create_2d(1, 5, 64, 64),
        wire::RESP_ERR_INVALID_PARAMETER,
    );
}

#[test]
fn test_resource_create_2d_beyond_max_host_memory_returns_out_of_memory() {
    let mut vmm = TestVmm::start(&["--max-host-memory", "1M"]);

    // 1024 x 1024 x 4 = 4 MiB > 1 MiB.
    expect_error(
        &mut vmm,
        &wire::resource_create_2d(1, wire::FORMAT_B8G8R8A8_UNORM, 1024, 1024),
        wire::RESP_ERR_OUT_OF_MEMORY,
    );
}

#[test]
fn test_resource_create_2d_sum_beyond_max_host_memory_returns_out_of_memory() {
    let mut vmm = TestVmm::start(&["--max-host-memory", "1M"]);
    // 512 x 256 x 4 = 512 KiB each: two fit exactly, a third does not.
    for id in 1..=2 {
        vmm.ok(&wire::resource_create_2d(
            id,
            wire::FORMAT_B8G8R8A8_UNORM,
            512,
            256,
        ));
    }

    expect_error(
        &mut vmm,
        &wire::resource_create_2d(3, wire::FORMAT_B8G8R8A8_UNORM, 512, 256),
        wire::RESP_ERR_OUT_OF_MEMORY,
    );
    vmm.ok(&wire::resource_unref(1));
    assert_eq!(
        vmm.ctrl_type(&wire::resource_create_2d(
            3,
            wire::FORMAT_B8G8R8A8_UNORM,
            512,
            256
        )),
        wire::RESP_OK_NODATA,
        "memory is returned on unref"
    );
}

#[test]
fn test_resource_unref_unknown_returns_invalid_resource_id() {
    let mut vmm = start();

    expect_error(
        &mut vmm,
        &wire::resource_unref(5),
        wire::RESP_ERR_INVALID_RESOURCE_ID,
    );
}

#[test]
fn test_resource_unref_while_scanned_out_succeeds_and_disables_the_scanout() {
    let mut vmm = start();
    create_64(&mut vmm, 1);
    vmm.ok(&wire::attach_backing(1, &page_entries(DATA_BASE, 4)));
    vmm.ok(&wire::set_scanout(0, 1, Rect::new(0, 0, 64, 64)));
    let from = vmm.display_mark();

    vmm.ok(&wire::resource_unref(1));
    vmm.display_mark();

    // The id is free again, nothing is attached, and the display was told
    // the scanout is off (SCANOUT of 0x0).
    assert_eq!(
        vmm.ctrl_type(&wire::resource_create_2d(
            1,
            wire::FORMAT_B8G8R8A8_UNORM,
            8,
            8
        )),
        wire::RESP_OK_NODATA
    );
    assert_eq!(vmm.metric("vugpu_attached_bytes"), 0.0);
    let display = vmm.display.as_ref().expect("display");
    let disabled = display.messages()[from..].iter().any(|m| {
        matches!(
            m,
            DisplayMsg::Scanout {
                scanout_id: 0,
                width: 0,
                height: 0
            }
        )
    });
    assert!(disabled, "scanout not disabled on the display");
}

#[test]
fn test_resource_unref_of_scanned_out_resources_logs_boundedly() {
    let mut vmm = start();
    for _ in 0..200 {
        create_64(&mut vmm, 1);
        vmm.ok(&wire::set_scanout(0, 1, Rect::new(0, 0, 64, 64)));
        vmm.ok(&wire::resource_unref(1));
    }

    let warnings = vmm.daemon_log().matches(" WARN ").count();

    assert!(warnings < 50, "{warnings} WARN lines for 200 unrefs");
}

#[test]
fn test_transfer_rect_outside_resource_returns_invalid_parameter() {
    let mut vmm = start();
    create_64(&mut vmm, 1);
    vmm.ok(&wire::attach_backing(1, &page_entries(DATA_BASE, 4)));

    expect_error(
        &mut vmm,
        &wire::transfer_to_host_2d(1, Rect::new(32, 32, 64, 64), 0),
        wire::RESP_ERR_INVALID_PARAMETER,
    );
}

#[test]
fn test_transfer_rect_wrapping_u32_returns_invalid_parameter() {
    let mut vmm = start();
    create_64(&mut vmm, 1);
    vmm.ok(&wire::attach_backing(1, &page_entries(DATA_BASE, 4)));

    // x + width wraps to 0x10 in u32 arithmetic.
    expect_error(
        &mut vmm,
        &wire::transfer_to_host_2d(1, Rect::new(0xffff_fff0, 0, 0x20, 1), 0),
        wire::RESP_ERR_INVALID_PARAMETER,
    );
}

#[test]
fn test_transfer_offset_outside_backing_is_refused() {
    let mut vmm = start();
    create_64(&mut vmm, 1);
    vmm.ok(&wire::attach_backing(1, &page_entries(DATA_BASE, 4)));
    let refused_before = vmm.metric("vugpu_refused_guest_accesses_total");

    // The full rect from offset 16 KiB reads 16 KiB past the backing's end.
    expect_error(
        &mut vmm,
        &wire::transfer_to_host_2d(1, Rect::new(0, 0, 64, 64), 4 * PAGE),
        wire::RESP_ERR_INVALID_PARAMETER,
    );
    assert_eq!(
        vmm.metric("vugpu_refused_guest_accesses_total"),
        refused_before + 1.0
    );
}

#[test]
fn test_transfer_without_backing_returns_unspec() {
    let mut vmm = start();
    create_64(&mut vmm, 1);

    expect_error(
        &mut vmm,
        &wire::transfer_to_host_2d(1, Rect::new(0, 0, 64, 64), 0),
        wire::RESP_ERR_UNSPEC,
    );
}

#[test]
fn test_transfer_unknown_resource_returns_invalid_resource_id() {
    let mut vmm = start();

    expect_error(
        &mut vmm,
        &wire::transfer_to_host_2d(9, Rect::new(0, 0, 1, 1), 0),
        wire::RESP_ERR_INVALID_RESOURCE_ID,
    );
}

#[test]
fn test_set_scanout_invalid_scanout_id_returns_invalid_scanout_id() {
    let mut vmm = start();
    create_64(&mut vmm, 1);

    // One output configured: scanout 1 does not exist.
    expect_error(
        &mut vmm,
        &wire::set_scanout(1, 1, Rect::new(0, 0, 64, 64)),
        wire::RESP_ERR_INVALID_SCANOUT_ID,
    );
}

#[test]
fn test_set_scanout_rect_outside_resource_returns_invalid_parameter() {
    let mut vmm = start();
    create_64(&mut vmm, 1);

    expect_error(
        &mut vmm,
        &wire::set_scanout(0, 1, Rect::new(16, 0, 64, 64)),
        wire::RESP_ERR_INVALID_PARAMETER,
    );
}

#[test]
fn test_set_scanout_unknown_resource_returns_invalid_resource_id() {
    let mut vmm = start();

    expect_error(
        &mut vmm,
        &wire::set_scanout(0, 9, Rect::new(0, 0, 64, 64)),
        wire::RESP_ERR_INVALID_RESOURCE_ID,
    );
}

#[test]
fn test_resource_flush_unknown_resource_returns_invalid_resource_id() {
    let mut vmm = start();

    expect_error(
        &mut vmm,
        &wire::resource_flush(9, Rect::new(0, 0, 1, 1)),
        wire::RESP_ERR_INVALID_RESOURCE_ID,
    );
}

#[test]
fn test_update_cursor_unknown_resource_sends_no_cursor_image() {
    let mut vmm = start();

    let bad = vmm.send_segments(CURSOR_Q, &[&wire::update_cursor(0, 5, 5, 99, (0, 0))], &[]);
    // A good command afterwards orders the display stream.
    create_64(&mut vmm, 5);
    vmm.ok(&wire::attach_backing(5, &page_entries(DATA_BASE, 4)));
    vmm.send_segments(CURSOR_Q, &[&wire::move_cursor(0, 7, 7, 5)], &[]);

    assert_eq!(bad.used_len, 0);
    let display = vmm.display.as_ref().expect("display");
    let (idx, _) = display.wait_for(0, |m| matches!(m, DisplayMsg::CursorPos { x: 7, .. }));
    let msgs = display.messages();
    assert!(
        !msgs[..idx]
            .iter()
            .any(|m| matches!(m, DisplayMsg::CursorUpdate { .. })),
        "cursor image sent for a missing resource: {msgs:?}"
    );
    vmm.assert_alive();
}

#[test]
fn test_update_cursor_non_cursor_sized_resource_sends_no_cursor_image() {
    let mut vmm = start();
    // 32x32 is not the 64x64 cursor size.
    vmm.create_backed_2d(5, 32, 32, &page_entries(DATA_BASE, 1));

    vmm.send_segments(CURSOR_Q, &[&wire::update_cursor(0, 5, 5, 5, (0, 0))], &[]);
    vmm.send_segments(CURSOR_Q, &[&wire::move_cursor(0, 9, 9, 5)], &[]);

    let display = vmm.display.as_ref().expect("display");
    let (idx, _) = display.wait_for(0, |m| matches!(m, DisplayMsg::CursorPos { x: 9, .. }));
    let msgs = display.messages();
    assert!(
        !msgs[..idx]
            .iter()
            .any(|m| matches!(m, DisplayMsg::CursorUpdate { .. })),
        "cursor image sent for a 32x32 resource: {msgs:?}"
    );
    vmm.assert_alive();
}

#[test]
fn test_cursor_chain_shorter_than_struct_keeps_serving() {
    let mut vmm = start();

    let resp = vmm.send_segments(CURSOR_Q, &[&wire::move_cursor(0, 1, 1, 0)[..20]], &[]);

    assert_eq!(resp.used_len, 0);
    vmm.assert_alive();
}

#[test]
fn test_cursor_command_on_control_queue_returns_error() {
    let mut vmm = start();

    let resp = vmm.ctrl(&wire::move_cursor(0, 1, 1, 0));

    assert!(
        (wire::RESP_ERR_UNSPEC..=wire::RESP_ERR_INVALID_PARAMETER).contains(&resp.type_()),
        "answered {:#x}",
        resp.type_()
    );
    vmm.assert_alive();
}

#[test]
fn test_control_command_on_cursor_queue_is_not_executed() {
    let mut vmm = start();

    let create = wire::resource_create_2d(1, wire::FORMAT_B8G8R8A8_UNORM, 8, 8);
    vmm.send_segments(CURSOR_Q, &[&create], &[24]);

    // Resource 1 must not exist: creating it on the control queue works.
    assert_eq!(vmm.ctrl_type(&create), wire::RESP_OK_NODATA);
}

#[test]
fn test_create_blob_huge_nr_entries_short_chain_is_rejected() {
    let mut vmm = TestVmm::start(&["--blob"]);
    // CREATE_BLOB claiming 2^32 - 1 entries, carrying one.
    let mut req = wire::resource_create_blob(
        1,
        wire::BLOB_MEM_GUEST,
        wire::BLOB_FLAG_USE_SHAREABLE,
        PAGE,
        &page_entries(DATA_BASE, 1),
    );
    req[36..40].copy_from_slice(&u32::MAX.to_le_bytes());

    let resp = vmm.ctrl(&req);

    assert!(
        [wire::RESP_ERR_INVALID_PARAMETER, wire::RESP_ERR_UNSPEC].contains(&resp.type_()),
        "answered {:#x}",
        resp.type_()
    );
    vmm.assert_alive();
}

#[test]
fn test_resource_flush_rect_outside_resource_returns_invalid_parameter() {
    let mut vmm = start();
    create_64(&mut vmm, 1);
    vmm.ok(&wire::attach_backing(1, &page_entries(DATA_BASE, 4)));
    vmm.ok(&wire::set_scanout(0, 1, Rect::new(0, 0, 64, 64)));

    expect_error(
        &mut vmm,
        &wire::resource_flush(1, Rect::new(0, 0, 65, 64)),
        wire::RESP_ERR_INVALID_PARAMETER,
    );
}

#[test]
fn test_transfer_offset_overflowing_u64_is_rejected() {
    let mut vmm = start();
    create_64(&mut vmm, 1);
    vmm.ok(&wire::attach_backing(1, &page_entries(DATA_BASE, 4)));

    // offset + stride * rows wraps around 2^64.
    let resp = vmm.ctrl(&wire::transfer_to_host_2d(
        1,
        Rect::new(0, 0, 64, 64),
        u64::MAX - 16,
    ));

    assert!(
        [wire::RESP_ERR_INVALID_PARAMETER, wire::RESP_ERR_UNSPEC].contains(&resp.type_()),
        "answered {:#x}",
        resp.type_()
    );
    vmm.assert_alive();
}

#[test]
fn test_resource_count_beyond_host_memory_budget_returns_out_of_memory() {
    // Each resource costs host memory beyond its pixels; the daemon allows
    // max_host_memory / 4096 resources: 256 for 1 MiB.
    let mut vmm = TestVmm::start(&["--max-host-memory", "1M"]);
    let mut created = 0;
    for id in 1..=256 {
        if vmm.ctrl_type(&wire::resource_create_2d(
            id,
            wire::FORMAT_B8G8R8A8_UNORM,
            1,
            1,
        )) == wire::RESP_OK_NODATA
        {
            created += 1;
        }
    }

    let over = vmm.ctrl_type(&wire::resource_create_2d(
        257,
        wire::FORMAT_B8G8R8A8_UNORM,
        1,
        1,
    ));
    vmm.ok(&wire::resource_unref(1));
    let after_unref = vmm.ctrl_type(&wire::resource_create_2d(
        257,
        wire::FORMAT_B8G8R8A8_UNORM,
        1,
        1,
    ));

    assert_eq!(created, 256);
    assert_eq!(over, wire::RESP_ERR_OUT_OF_MEMORY);
    assert_eq!(after_unref, wire::RESP_OK_NODATA);
}

#[test]
fn test_backing_ranges_beyond_host_memory_budget_return_out_of_memory() {
    // 1 MiB allows 4096 coalesced ranges; 4097 separated 16-byte entries
    // (every other 16 bytes) exceed it although they cover the resource.
    let mut vmm = TestVmm::start(&["--max-host-memory", "1M", "--max-backing-entries", "8192"]);
    vmm.ok(&wire::resource_create_2d(
        1,
        wire::FORMAT_B8G8R8A8_UNORM,
        128,
        128,
    ));
    let entries: Vec<_> = (0..4097u64)
        .map(|i| entry(DATA_BASE + i * 32, 16))
        .collect();

    let resp = vmm.ctrl(&wire::attach_backing(1, &entries));

    assert_eq!(resp.type_(), wire::RESP_ERR_OUT_OF_MEMORY);
    assert_eq!(vmm.metric("vugpu_attached_bytes"), 0.0);
    vmm.assert_alive();
}

// ---------------------------------------------------------------------------
// Malformed vhost-user messages from the frontend: each one is refused (a
// non-zero REPLY_ACK, or an empty reply where the request has its own) and
// the connection keeps serving with the state it had.

const SET_OWNER: u32 = 3;
const SET_MEM_TABLE: u32 = 5;
const SET_VRING_NUM: u32 = 8;
const SET_VRING_ADDR: u32 = 9;
const GET_VRING_BASE: u32 = 11;
const SET_VRING_KICK: u32 = 12;
const ADD_MEM_REG: u32 = 37;
const UNKNOWN_REQUEST: u32 = 99;

/// A SET_MEM_TABLE payload for `regions` (gpa, size, uva, mmap_offset),
/// announcing `count` regions.
fn mem_table(count: u32, regions: &[(u64, u64, u64, u64)]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&count.to_le_bytes());
    p.extend_from_slice(&0u32.to_le_bytes());
    for &(gpa, size, uva, offset) in regions {
        for v in [gpa, size, uva, offset] {
            p.extend_from_slice(&v.to_le_bytes());
        }
    }
    p
}

fn vring_state(index: u32, num: u32) -> Vec<u8> {
    let mut p = index.to_le_bytes().to_vec();
    p.extend_from_slice(&num.to_le_bytes());
    p
}

/// Asserts `ack` is a refusal, that it was counted, and that the device
/// still works on its old memory table and rings: a resource is created,
/// backed, uploaded and detached.
fn assert_refused_and_serving(vmm: &mut TestVmm, ack: u64, refusals: f64) {
    assert_ne!(ack, 0, "request was accepted");
    assert_eq!(
        vmm.metric("vugpu_frontend_messages_refused_total"),
        refusals
    );
    vmm.assert_alive();
    let id = 100 + refusals as u32;
    vmm.create_backed_2d(id, 32, 32, &page_entries(DATA_BASE, 1));
    vmm.ok(&wire::transfer_to_host_2d(id, Rect::new(0, 0, 32, 32), 0));
    vmm.ok(&wire::detach_backing(id));
}

#[test]
fn test_vhost_mem_table_region_of_size_zero_is_refused() {
    let mut vmm = start();
    let file = crate::common::memfd("zero", MEM_SIZE);
    let table = mem_table(1, &[(0, 0, crate::common::VA_OFFSET, 0)]);

    let ack = vmm.acked_request(SET_MEM_TABLE, &table, &[file.as_raw_fd()]);

    assert_refused_and_serving(&mut vmm, ack, 1.0);
}

#[test]
fn test_vhost_mem_table_overlapping_regions_are_refused() {
    let mut vmm = start();
    let a = crate::common::memfd("a", MEM_SIZE);
    let b = crate::common::memfd("b", MEM_SIZE);
    let table = mem_table(
        2,
        &[
            (0, MEM_SIZE, crate::common::VA_OFFSET, 0),
            (
                MEM_SIZE / 2,
                MEM_SIZE,
                crate::common::VA_OFFSET + MEM_SIZE,
                0,
            ),
        ],
    );

    let ack = vmm.acked_request(SET_MEM_TABLE, &table, &[a.as_raw_fd(), b.as_raw_fd()]);

    assert_refused_and_serving(&mut vmm, ack, 1.0);
}

#[test]
fn test_vhost_mem_table_wrapping_region_is_refused() {
    let mut vmm = start();
    let file = crate::common::memfd("wrap", MEM_SIZE);
    let table = mem_table(
        1,
        &[(u64::MAX - PAGE + 1, 2 * PAGE, crate::common::VA_OFFSET, 0)],
    );

    let ack = vmm.acked_request(SET_MEM_TABLE, &table, &[file.as_raw_fd()]);

    assert_refused_and_serving(&mut vmm, ack, 1.0);
}

#[test]
fn test_vhost_mem_table_more_regions_than_sent_is_refused() {
    let mut vmm = start();
    let file = crate::common::memfd("short", MEM_SIZE);
    let table = mem_table(3, &[(0, MEM_SIZE, crate::common::VA_OFFSET, 0)]);

    let ack = vmm.acked_request(SET_MEM_TABLE, &table, &[file.as_raw_fd()]);

    assert_refused_and_serving(&mut vmm, ack, 1.0);
}

#[test]
fn test_vhost_mem_table_region_beyond_end_of_file_is_refused() {
    let mut vmm = start();
    // One page of file, a region of 64 MiB at offset 0: mapping it would
    // SIGBUS on the first access past the first page.
    let file = crate::common::memfd("small", PAGE);
    let table = mem_table(1, &[(0, MEM_SIZE, crate::common::VA_OFFSET, 0)]);

    let ack = vmm.acked_request(SET_MEM_TABLE, &table, &[file.as_raw_fd()]);

    assert_refused_and_serving(&mut vmm, ack, 1.0);
}

#[test]
fn test_vhost_mem_table_offset_past_end_of_file_is_refused() {
    let mut vmm = start();
    let file = crate::common::memfd("offset", MEM_SIZE);
    let table = mem_table(1, &[(0, MEM_SIZE, crate::common::VA_OFFSET, PAGE)]);

    let ack = vmm.acked_request(SET_MEM_TABLE, &table, &[file.as_raw_fd()]);

    assert_refused_and_serving(&mut vmm, ack, 1.0);
}

#[test]
fn test_vhost_ring_size_zero_is_refused() {
    let mut vmm = start();

    let ack = vmm.acked_request(SET_VRING_NUM, &vring_state(0, 0), &[]);

    assert_refused_and_serving(&mut vmm, ack, 1.0);
}

#[test]
fn test_vhost_ring_size_not_power_of_two_is_refused() {
    let mut vmm = start();

    let ack = vmm.acked_request(SET_VRING_NUM, &vring_state(0, 255), &[]);

    assert_refused_and_serving(&mut vmm, ack, 1.0);
}

#[test]
fn test_vhost_ring_size_above_maximum_is_refused() {
    let mut vmm = start();

    let ack = vmm.acked_request(SET_VRING_NUM, &vring_state(0, 2048), &[]);

    assert_refused_and_serving(&mut vmm, ack, 1.0);
}

#[test]
fn test_vhost_ring_address_outside_mapped_memory_is_refused() {
    let mut vmm = start();
    let mut addr = 0u32.to_le_bytes().to_vec(); // queue 0
    addr.extend_from_slice(&0u32.to_le_bytes()); // flags
    let outside = crate::common::VA_OFFSET + 2 * MEM_SIZE;
    for a in [
        crate::common::VA_OFFSET,
        outside,
        crate::common::VA_OFFSET + 0x1000,
        0,
    ] {
        addr.extend_from_slice(&a.to_le_bytes()); // desc, used, avail, log
    }

    let ack = vmm.acked_request(SET_VRING_ADDR, &addr, &[]);

    assert_refused_and_serving(&mut vmm, ack, 1.0);
}

#[test]
fn test_vhost_ring_straddling_end_of_memory_is_refused() {
    let mut vmm = start();
    let mut addr = 0u32.to_le_bytes().to_vec();
    addr.extend_from_slice(&0u32.to_le_bytes());
    // The 4 KiB descriptor table of a 256-entry ring starts 16 bytes before
    // the end of guest memory.
    let desc = crate::common::VA_OFFSET + MEM_SIZE - 16;
    for a in [
        desc,
        crate::common::VA_OFFSET + 0x2000,
        crate::common::VA_OFFSET + 0x1000,
        0,
    ] {
        addr.extend_from_slice(&a.to_le_bytes());
    }

    let ack = vmm.acked_request(SET_VRING_ADDR, &addr, &[]);

    assert_refused_and_serving(&mut vmm, ack, 1.0);
}

#[test]
fn test_vhost_queue_index_out_of_range_is_refused() {
    let mut vmm = start();

    let ack = vmm.acked_request(SET_VRING_NUM, &vring_state(5, 256), &[]);

    assert_refused_and_serving(&mut vmm, ack, 1.0);
}

#[test]
fn test_vhost_get_vring_base_out_of_range_gets_an_empty_reply() {
    let mut vmm = start();

    let (code, _, body) = vmm
        .raw_request(GET_VRING_BASE, &vring_state(7, 0), &[], false, true)
        .expect("reply");

    assert_eq!(code, GET_VRING_BASE);
    assert_eq!(body, vring_state(7, 0));
    assert_refused_and_serving(&mut vmm, 1, 1.0);
}

#[test]
fn test_vhost_vring_kick_out_of_range_is_refused() {
    let mut vmm = start();
    let kick = vmm_sys_util::eventfd::EventFd::new(0).expect("eventfd");

    let ack = vmm.acked_request(SET_VRING_KICK, &9u64.to_le_bytes(), &[kick.as_raw_fd()]);

    assert_refused_and_serving(&mut vmm, ack, 1.0);
}

#[test]
fn test_vhost_unknown_request_is_refused() {
    let mut vmm = start();

    let ack = vmm.acked_request(UNKNOWN_REQUEST, &[1, 2, 3, 4], &[]);

    assert_refused_and_serving(&mut vmm, ack, 1.0);
}

#[test]
fn test_vhost_second_set_owner_is_refused() {
    let mut vmm = start();

    let ack = vmm.acked_request(SET_OWNER, &[], &[]);

    assert_refused_and_serving(&mut vmm, ack, 1.0);
}

#[test]
fn test_vhost_add_mem_reg_without_configure_mem_slots_is_refused() {
    let mut vmm = start();
    let file = crate::common::memfd("slot", MEM_SIZE);
    let mut region = 0u64.to_le_bytes().to_vec(); // padding
    for v in [HIGH, MEM_SIZE, crate::common::VA_OFFSET + HIGH, 0] {
        region.extend_from_slice(&v.to_le_bytes());
    }

    let ack = vmm.acked_request(ADD_MEM_REG, &region, &[file.as_raw_fd()]);

    assert_refused_and_serving(&mut vmm, ack, 1.0);
}

/// A guest address far above the test's memory.
const HIGH: u64 = 0x10_0000_0000;

#[test]
fn test_vhost_refusals_in_a_row_leave_the_connection_usable() {
    let mut vmm = start();
    let acks = [
        vmm.acked_request(SET_VRING_NUM, &vring_state(0, 0), &[]),
        vmm.acked_request(UNKNOWN_REQUEST, &[], &[]),
        vmm.acked_request(SET_VRING_NUM, &vring_state(9, 256), &[]),
    ];

    let resp = vmm.ctrl(&wire::get_display_info());

    assert!(acks.iter().all(|&a| a != 0), "{acks:?}");
    assert_eq!(resp.type_(), wire::RESP_OK_DISPLAY_INFO);
    assert_refused_and_serving(&mut vmm, 1, 3.0);
}
