//! Hostile descriptor chains and memory layouts: the daemon must neither
//! crash nor touch memory it was not given, and must keep serving.

use crate::common::wire::{self, Rect};
use crate::common::{
    entry, page_entries, pattern, Desc, TestVmm, VmmOptions, CTRL_Q, DATA_BASE, HIGH_BASE, PAGE,
};

/// GPA in the hole between the 64 MiB low region and the high region.
const HOLE: u64 = 0x8000_0000;

#[test]
fn test_request_descriptor_outside_guest_memory_completes_and_keeps_serving() {
    let mut vmm = TestVmm::start(&[]);

    let used = vmm.send_descs(
        CTRL_Q,
        &[
            Desc {
                addr: HOLE,
                len: 24,
                write: false,
            },
            Desc {
                addr: 0x8_0000,
                len: 24,
                write: true,
            },
        ],
    );

    assert!(used <= 24);
    vmm.assert_alive();
    assert!(vmm.metric("vugpu_decode_errors_total") >= 1.0);
}

#[test]
fn test_response_descriptor_outside_guest_memory_keeps_serving() {
    let mut vmm = TestVmm::start(&[]);
    let req = wire::get_display_info();
    vmm.write_guest(0x1_0000, &req);

    vmm.send_descs(
        CTRL_Q,
        &[
            Desc {
                addr: 0x1_0000,
                len: req.len() as u32,
                write: false,
            },
            Desc {
                addr: HOLE,
                len: 408,
                write: true,
            },
        ],
    );

    vmm.assert_alive();
}

#[test]
fn test_descriptor_length_beyond_memory_end_keeps_serving() {
    let mut vmm = TestVmm::start(&[]);

    // A 4 GiB - 1 readable descriptor starting in RAM.
    vmm.send_descs(
        CTRL_Q,
        &[
            Desc {
                addr: 0x1_0000,
                len: u32::MAX,
                write: false,
            },
            Desc {
                addr: 0x8_0000,
                len: 24,
                write: true,
            },
        ],
    );

    vmm.assert_alive();
}

#[test]
fn test_writable_descriptor_before_readable_keeps_serving() {
    let mut vmm = TestVmm::start(&[]);
    let req = wire::get_display_info();
    vmm.write_guest(0x1_0000, &req);

    // virtio requires device-readable descriptors first.
    vmm.send_descs(
        CTRL_Q,
        &[
            Desc {
                addr: 0x8_0000,
                len: 408,
                write: true,
            },
            Desc {
                addr: 0x1_0000,
                len: req.len() as u32,
                write: false,
            },
        ],
    );

    vmm.assert_alive();
}

#[test]
fn test_indirect_chain_request_is_served() {
    let mut vmm = TestVmm::start(&[]);
    vmm.ok(&wire::resource_create_2d(
        1,
        wire::FORMAT_B8G8R8A8_UNORM,
        64,
        64,
    ));
    let req = wire::attach_backing(1, &page_entries(DATA_BASE, 4));

    // Linux with INDIRECT_DESC: one indirect descriptor -> [cmd, entries, resp].
    let resp = vmm.send_indirect(CTRL_Q, &[&req[..32], &req[32..]], &[24]);

    assert_eq!(resp.type_(), wire::RESP_OK_NODATA);
    assert_eq!(resp.used_len, 24);
}

#[test]
fn test_daemon_without_event_idx_serves_commands() {
    let mut opts = VmmOptions::new(&[]);
    opts.event_idx = false;
    let mut vmm = TestVmm::start_with(opts);

    let resp = vmm.ctrl(&wire::get_display_info());

    assert_eq!(resp.type_(), wire::RESP_OK_DISPLAY_INFO);
}

#[test]
fn test_avail_index_jump_beyond_ring_size_does_not_kill_daemon() {
    let mut vmm = TestVmm::start(&[]);

    // The driver claims 1000 new chains on a 256-entry ring.
    vmm.corrupt_avail_idx(CTRL_Q, 1000);
    vmm.kick(CTRL_Q);
    vmm.sync();

    // The vhost-user channel and metrics still answer; the process lives.
    assert!(vmm
        .child
        .as_mut()
        .expect("child")
        .try_wait()
        .expect("try_wait")
        .is_none());
    assert!(vmm.metrics().contains("vugpu_resources"));
}

#[test]
fn test_memory_table_without_backing_region_refuses_transfer() {
    let mut opts = VmmOptions::new(&[]);
    opts.high_region = true;
    let mut vmm = TestVmm::start_with(opts);
    vmm.write_guest(HIGH_BASE, &pattern(3, 4 * PAGE as usize));
    vmm.create_backed_2d(1, 64, 64, &page_entries(HIGH_BASE, 4));
    let refused_before = vmm.metric("vugpu_refused_guest_accesses_total");

    // The VMM drops the high region while the resource is attached to it.
    vmm.remap_with(false, true);
    let resp = vmm.ctrl(&wire::transfer_to_host_2d(1, Rect::new(0, 0, 64, 64), 0));

    assert!(
        (wire::RESP_ERR_UNSPEC..=wire::RESP_ERR_INVALID_PARAMETER).contains(&resp.type_()),
        "transfer from unmapped backing answered {:#x}",
        resp.type_()
    );
    assert_eq!(
        vmm.metric("vugpu_refused_guest_accesses_total"),
        refused_before + 1.0
    );
    vmm.assert_alive();
}

#[test]
fn test_backing_region_removed_then_reattached_in_low_memory_works() {
    let mut opts = VmmOptions::new(&[]);
    opts.high_region = true;
    let mut vmm = TestVmm::start_with(opts);
    vmm.create_backed_2d(1, 64, 64, &page_entries(HIGH_BASE, 4));
    vmm.remap_with(false, true);

    // The daemon drops backing that is no longer guest memory, so the
    // guest's DETACH may find none (ERR_UNSPEC); either way it can attach
    // new pages in low memory afterwards.
    let detach = vmm.ctrl_type(&wire::detach_backing(1));
    let attach = vmm.ctrl_type(&wire::attach_backing(
        1,
        &[entry(DATA_BASE, 4 * PAGE as u32)],
    ));

    assert!(
        [wire::RESP_OK_NODATA, wire::RESP_ERR_UNSPEC].contains(&detach),
        "detach answered {detach:#x}"
    );
    assert_eq!(attach, wire::RESP_OK_NODATA);
    assert_eq!(vmm.metric("vugpu_attached_bytes"), (4 * PAGE) as f64);
}

#[test]
fn test_avail_index_jump_then_disconnect_exits_zero() {
    let mut opts = VmmOptions::new(&[]);
    opts.inherit_fd = true;
    let mut vmm = TestVmm::start_with(opts);
    vmm.corrupt_avail_idx(CTRL_Q, 1000);
    vmm.kick(CTRL_Q);
    vmm.sync();

    let status = vmm.disconnect_and_wait();

    assert!(
        status.success(),
        "exit status {status}:\n{}",
        vmm.daemon_log_tail()
    );
}

#[test]
fn test_broken_ring_recovers_after_device_reset() {
    let mut vmm = TestVmm::start(&[]);
    vmm.corrupt_avail_idx(CTRL_Q, 1000);
    vmm.kick(CTRL_Q);
    vmm.sync();

    // What a guest driver does with a broken device: reset and start over.
    vmm.reset();
    let resp = vmm.ctrl(&wire::get_display_info());

    assert_eq!(resp.type_(), wire::RESP_OK_DISPLAY_INFO);
}

#[test]
fn test_broken_ring_counts_few_decode_errors_and_logs_boundedly() {
    let mut vmm = TestVmm::start(&[]);

    vmm.corrupt_avail_idx(CTRL_Q, 1000);
    vmm.kick(CTRL_Q);
    vmm.sync();
    // The worker runs on its own thread: wait (bounded) until it saw the kick.
    let deadline = std::time::Instant::now() + crate::common::TIMEOUT;
    while vmm.metric("vugpu_decode_errors_total") < 1.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }

    // A spinning worker would count (and log) thousands.
    let errors = vmm.metric("vugpu_decode_errors_total");
    assert!(
        (1.0..=2.0).contains(&errors),
        "{errors} decode errors for one kick"
    );
    let lines = vmm
        .daemon_log()
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .count();
    assert!(
        lines < 20,
        "{lines} error/warning lines for one broken ring"
    );
}

/// `n` one-page entries at `base`, every other page (so none coalesce).
fn scattered(base: u64, n: u64) -> Vec<wire::MemEntry> {
    (0..n)
        .map(|i| entry(base + 2 * i * PAGE, PAGE as u32))
        .collect()
}

#[test]
fn test_backing_dropped_by_memory_update_releases_its_range_budget() {
    // 16 KiB of --max-host-memory allows 16384 / 256 = 64 backing ranges.
    let mut opts = VmmOptions::new(&["--blob", "--max-host-memory", "16K"]);
    opts.high_region = true;
    let mut vmm = TestVmm::start_with(opts);
    vmm.ok(&wire::resource_create_blob(
        1,
        wire::BLOB_MEM_GUEST,
        wire::BLOB_FLAG_USE_SHAREABLE,
        60 * PAGE,
        &scattered(HIGH_BASE, 60),
    ));
    // The VMM unplugs the region holding all 60 ranges; then the guest
    // frees the resource.
    vmm.remap_with(false, true);
    vmm.ok(&wire::resource_unref(1));

    // Nothing is attached anywhere now, so 10 ranges must fit.
    let resp = vmm.ctrl_type(&wire::resource_create_blob(
        2,
        wire::BLOB_MEM_GUEST,
        wire::BLOB_FLAG_USE_SHAREABLE,
        10 * PAGE,
        &scattered(DATA_BASE, 10),
    ));

    assert_eq!(resp, wire::RESP_OK_NODATA);
    assert_eq!(vmm.metric("vugpu_attached_bytes"), (10 * PAGE) as f64);
}
