//! Virtqueue mechanics as a Linux guest uses them: requests and responses
//! split across descriptors, batches, ring wrap-around, large entry lists,
//! and the VMM stopping and restarting the rings.

use crate::common::wire::{self, Rect};
use crate::common::{entry, page_entries, Desc, TestVmm, CTRL_Q, DATA_BASE, PAGE};

#[test]
fn test_attach_backing_entries_in_separate_descriptor_is_accepted() {
    let mut vmm = TestVmm::start(&[]);
    vmm.ok(&wire::resource_create_2d(
        1,
        wire::FORMAT_B8G8R8A8_UNORM,
        64,
        64,
    ));
    let req = wire::attach_backing(1, &page_entries(DATA_BASE, 4));

    // Linux puts the command in one buffer and the entry array in another.
    let resp = vmm.send_segments(CTRL_Q, &[&req[..32], &req[32..]], &[24]);

    assert_eq!(resp.type_(), wire::RESP_OK_NODATA);
    assert_eq!(vmm.metric("vugpu_attached_bytes"), (4 * PAGE) as f64);
}

#[test]
fn test_display_info_response_split_across_descriptors_is_complete() {
    let mut vmm = TestVmm::start(&["--width", "640", "--height", "480"]);

    let resp = vmm.send_segments(CTRL_Q, &[&wire::get_display_info()], &[24, 384]);

    assert_eq!(resp.type_(), wire::RESP_OK_DISPLAY_INFO);
    assert_eq!(resp.used_len as usize, wire::RESP_DISPLAY_INFO_SIZE);
    assert_eq!(
        (wire::le32(&resp.bytes, 32), wire::le32(&resp.bytes, 36)),
        (640, 480)
    );
}

#[test]
fn test_batch_of_chains_kicked_once_completes_in_order() {
    let mut vmm = TestVmm::start(&[]);
    // 32 CREATE_2D requests queued before a single kick.
    let mut heads = Vec::new();
    for i in 0..32u32 {
        let req = wire::resource_create_2d(i + 1, wire::FORMAT_B8G8R8A8_UNORM, 8, 8);
        let at = 0x1_0000 + u64::from(i) * 0x100;
        let resp_at = 0x8_0000 + u64::from(i) * 0x100;
        vmm.write_guest(at, &req);
        heads.push(vmm.push_chain(
            CTRL_Q,
            &[
                Desc {
                    addr: at,
                    len: req.len() as u32,
                    write: false,
                },
                Desc {
                    addr: resp_at,
                    len: 24,
                    write: true,
                },
            ],
        ));
    }

    vmm.kick(CTRL_Q);
    let used: Vec<_> = (0..32).map(|_| vmm.wait_used(CTRL_Q)).collect();

    let ids: Vec<u32> = used.iter().map(|(id, _)| *id).collect();
    let expected: Vec<u32> = heads.iter().map(|h| u32::from(*h)).collect();
    assert_eq!(ids, expected);
    for i in 0..32u64 {
        let resp = vmm.read_guest(0x8_0000 + i * 0x100, 24);
        assert_eq!(wire::le32(&resp, 0), wire::RESP_OK_NODATA, "request {i}");
    }
    assert_eq!(vmm.metric("vugpu_resources"), 32.0);
}

#[test]
fn test_ring_wraps_around_many_times_and_keeps_serving() {
    let mut vmm = TestVmm::start(&[]);

    // 600 two-descriptor chains on a 256-entry ring wrap it more than twice
    // (descriptor table, avail and used indices).
    let mut fails = 0;
    for _ in 0..600 {
        if vmm.ctrl_type(&wire::get_display_info()) != wire::RESP_OK_DISPLAY_INFO {
            fails += 1;
        }
    }

    assert_eq!(fails, 0);
    assert_eq!(
        vmm.metric(r#"vugpu_commands_total{cmd="get_display_info"}"#),
        600.0
    );
}

#[test]
fn test_attach_backing_default_cap_of_16384_entries_is_accepted() {
    let mut vmm = TestVmm::start(&[]);
    // 512x512 BGRA = 1 MiB, described by 16384 entries of 64 bytes, every
    // other one listed first so that no two neighbours coalesce in order.
    vmm.ok(&wire::resource_create_2d(
        1,
        wire::FORMAT_B8G8R8A8_UNORM,
        512,
        512,
    ));
    let mut entries: Vec<_> = (0..16384u64)
        .map(|i| entry(DATA_BASE + i * 64, 64))
        .collect();
    entries.swap(0, 1);

    let resp = vmm.ctrl(&wire::attach_backing(1, &entries));

    assert_eq!(resp.type_(), wire::RESP_OK_NODATA);
    assert_eq!(vmm.metric("vugpu_attached_bytes"), (1u64 << 20) as f64);
}

#[test]
fn test_attach_backing_one_over_default_cap_returns_invalid_parameter() {
    let mut vmm = TestVmm::start(&[]);
    vmm.ok(&wire::resource_create_2d(
        1,
        wire::FORMAT_B8G8R8A8_UNORM,
        512,
        512,
    ));
    let entries: Vec<_> = (0..16385u64)
        .map(|i| entry(DATA_BASE + i * 64, 64))
        .collect();

    let resp = vmm.ctrl(&wire::attach_backing(1, &entries));

    assert_eq!(resp.type_(), wire::RESP_ERR_INVALID_PARAMETER);
    vmm.assert_alive();
}

#[test]
fn test_rings_stopped_and_restarted_by_vmm_keep_serving() {
    let mut vmm = TestVmm::start(&[]);
    vmm.ok(&wire::resource_create_2d(
        1,
        wire::FORMAT_B8G8R8A8_UNORM,
        64,
        64,
    ));

    // What QEMU does on vhost_dev_stop/start: GET_VRING_BASE on every ring,
    // then the whole ring setup again.
    vmm.stop_and_restart_rings();
    let resp = vmm.ctrl(&wire::get_display_info());

    assert_eq!(resp.type_(), wire::RESP_OK_DISPLAY_INFO);
}

#[test]
fn test_fenced_transfer_echoes_fence_and_counts_completion() {
    let mut vmm = TestVmm::start(&[]);
    vmm.create_backed_2d(1, 64, 64, &page_entries(DATA_BASE, 4));
    let before = vmm.metric("vugpu_fences_completed_total");

    let resp = vmm.ctrl(&wire::with_fence(
        wire::transfer_to_host_2d(1, Rect::new(0, 0, 64, 64), 0),
        99,
        0,
    ));

    assert_eq!(resp.type_(), wire::RESP_OK_NODATA);
    assert_ne!(resp.flags() & wire::FLAG_FENCE, 0);
    assert_eq!(resp.fence_id(), 99);
    assert_eq!(vmm.metric("vugpu_fences_completed_total"), before + 1.0);
}

#[test]
fn test_disabled_ring_is_not_served_until_enabled() {
    let mut vmm = TestVmm::start(&[]);
    vmm.set_ring_enabled(CTRL_Q, false);
    let req = wire::get_display_info();
    vmm.write_guest(0x1_0000, &req);
    vmm.push_chain(
        CTRL_Q,
        &[
            Desc {
                addr: 0x1_0000,
                len: req.len() as u32,
                write: false,
            },
            Desc {
                addr: 0x8_0000,
                len: 408,
                write: true,
            },
        ],
    );
    vmm.kick(CTRL_Q);

    // Bounded negative check: nothing may complete while disabled.
    let while_disabled = vmm.try_wait_used(CTRL_Q, std::time::Duration::from_millis(300));
    vmm.set_ring_enabled(CTRL_Q, true);
    vmm.kick(CTRL_Q);
    let after_enable = vmm.wait_used(CTRL_Q);

    assert_eq!(while_disabled, None, "a disabled ring was served");
    assert_eq!(after_enable.1, 408);
}

#[test]
fn test_a_batch_of_commands_is_signalled_once() {
    let mut opts = crate::common::VmmOptions::new(&[]);
    // Without EVENT_IDX every completion may be signalled; batching is
    // what keeps it to one notification per pass.
    opts.event_idx = false;
    let mut vmm = TestVmm::start_with(opts);
    let req = wire::get_display_info();
    for i in 0..8u64 {
        vmm.write_guest(0x1_0000 + i * 0x100, &req);
        vmm.push_chain(
            CTRL_Q,
            &[
                crate::common::Desc {
                    addr: 0x1_0000 + i * 0x100,
                    len: req.len() as u32,
                    write: false,
                },
                crate::common::Desc {
                    addr: 0x8_0000 + i * 0x400,
                    len: 0x400,
                    write: true,
                },
            ],
        );
    }
    let before = vmm.used_idx(CTRL_Q);
    let _ = vmm.take_calls(CTRL_Q);

    vmm.kick(CTRL_Q);
    let deadline = std::time::Instant::now() + crate::common::TIMEOUT;
    while vmm.used_idx(CTRL_Q).wrapping_sub(before) < 8 {
        assert!(
            std::time::Instant::now() < deadline,
            "commands not completed"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(50));

    assert_eq!(vmm.take_calls(CTRL_Q), 1);
}
