//! Long attach/detach/transfer churn against one daemon: its RSS must stay
//! flat after a warm-up. Ignored by default (it runs for minutes):
//!
//! ```text
//! VUGPU_CHURN_SECS=300  cargo test -p vhost-user-gpu --release -- --ignored churn   # 5 minutes
//! VUGPU_CHURN_SECS=3600 cargo test -p vhost-user-gpu --release -- --ignored churn   # 1 hour
//! ```

use std::time::{Duration, Instant};

use crate::common::wire::{self, Rect};
use crate::common::{page_entries, pattern, TestVmm, DATA_BASE, PAGE};

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// One round: 8 resources of 64x64 created, backed, uploaded, detached,
/// re-attached at other pages, uploaded and flushed, then destroyed; one
/// guest blob created, shown, detached, re-attached and flushed.
fn round(vmm: &mut TestVmm, n: u64) {
    let full = Rect::new(0, 0, 64, 64);
    for id in 1..=8u32 {
        let site = DATA_BASE + u64::from(id) * 8 * PAGE;
        let other = DATA_BASE + 0x40_0000 + u64::from(id) * 8 * PAGE + (n % 2) * 4 * PAGE;
        vmm.create_backed_2d(id, 64, 64, &page_entries(site, 4));
        vmm.ok(&wire::transfer_to_host_2d(id, full, 0));
        vmm.ok(&wire::with_fence(wire::detach_backing(id), n, 0));
        vmm.ok(&wire::attach_backing(id, &page_entries(other, 4)));
        vmm.ok(&wire::transfer_to_host_2d(id, full, 0));
    }
    vmm.ok(&wire::set_scanout(0, 1, full));
    vmm.ok(&wire::resource_flush(1, full));
    for id in 1..=8u32 {
        vmm.ok(&wire::resource_unref(id));
    }
    vmm.ok(&wire::resource_create_blob(
        9,
        wire::BLOB_MEM_GUEST,
        wire::BLOB_FLAG_USE_SHAREABLE,
        PAGE,
        &page_entries(DATA_BASE + 0x80_0000, 1),
    ));
    vmm.ok(&wire::set_scanout_blob(
        0,
        9,
        Rect::new(0, 0, 16, 16),
        (16, 16, wire::FORMAT_B8G8R8X8_UNORM, 64),
    ));
    vmm.ok(&wire::detach_backing(9));
    vmm.ok(&wire::attach_backing(
        9,
        &page_entries(DATA_BASE + 0x80_1000, 1),
    ));
    vmm.ok(&wire::resource_flush(9, Rect::new(0, 0, 16, 16)));
    vmm.ok(&wire::resource_unref(9));
}

#[test]
#[ignore = "runs for VUGPU_CHURN_SECS (default 300) seconds"]
fn test_churn_attach_detach_transfer_keeps_rss_within_one_percent() {
    let secs: u64 = std::env::var("VUGPU_CHURN_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut vmm = TestVmm::start(&["--blob"]);
    vmm.write_guest(DATA_BASE, &pattern(7, (16 << 20) as usize));
    let pid = vmm.pid();
    let duration = Duration::from_secs(secs);
    let warm_up = duration / 10;
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < warm_up {
        round(&mut vmm, n);
        n += 1;
    }
    let rss_warm = rss_kib(pid);
    let mut rss_max = rss_warm;
    while started.elapsed() < duration {
        round(&mut vmm, n);
        n += 1;
        if n & 63 == 0 {
            rss_max = rss_max.max(rss_kib(pid));
        }
    }
    let rss_end = rss_kib(pid);
    rss_max = rss_max.max(rss_end);

    eprintln!("churn: {n} rounds in {secs} s; RSS after warm-up {rss_warm} KiB, max {rss_max} KiB, end {rss_end} KiB");
    assert!(
        rss_max * 100 <= rss_warm * 101,
        "RSS grew by more than 1%: {rss_warm} KiB -> {rss_max} KiB"
    );
    assert_eq!(vmm.metric("vugpu_resources"), 0.0);
    assert_eq!(vmm.metric("vugpu_refused_guest_accesses_total"), 0.0);
}
