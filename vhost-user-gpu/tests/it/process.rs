//! The daemon as a process: metrics endpoint, exit on frontend disconnect
//! and on SIGTERM, socket cleanup.

use crate::common::wire::{self, Rect};
use crate::common::{metric_value, page_entries, TestVmm, VmmOptions, DATA_BASE, PAGE};

#[test]
fn test_metrics_after_attach_detach_cycles_report_counts() {
    let mut vmm = TestVmm::start(&[]);
    // Two attach/detach cycles of a 64x64 resource (16 KiB each), one
    // refused transfer without backing, one unknown resource.
    vmm.ok(&wire::resource_create_2d(
        1,
        wire::FORMAT_B8G8R8A8_UNORM,
        64,
        64,
    ));
    for site in [DATA_BASE, DATA_BASE + 0x10_0000] {
        vmm.ok(&wire::attach_backing(1, &page_entries(site, 4)));
        vmm.ok(&wire::with_fence(wire::detach_backing(1), 3, 0));
    }
    vmm.ctrl(&wire::transfer_to_host_2d(1, Rect::new(0, 0, 64, 64), 0));
    vmm.ctrl(&wire::detach_backing(99));

    let text = vmm.metrics();

    let m =
        |name: &str| metric_value(&text, name).unwrap_or_else(|| panic!("{name} missing:\n{text}"));
    assert_eq!(m("vugpu_attach_backing_total"), 2.0);
    assert_eq!(m("vugpu_detach_backing_total"), 2.0);
    assert_eq!(
        m(r#"vugpu_commands_total{cmd="resource_attach_backing"}"#),
        2.0
    );
    assert_eq!(
        m(r#"vugpu_commands_total{cmd="resource_detach_backing"}"#),
        3.0
    );
    assert_eq!(m("vugpu_attached_bytes"), 0.0);
    assert_eq!(m("vugpu_attached_bytes_total"), (8 * PAGE) as f64);
    assert_eq!(m("vugpu_detached_bytes_total"), (8 * PAGE) as f64);
    assert_eq!(m("vugpu_refused_guest_accesses_total"), 1.0);
    assert_eq!(
        m(r#"vugpu_command_errors_total{code="err_invalid_resource_id"}"#),
        1.0
    );
    assert_eq!(m("vugpu_detach_latency_seconds_count"), 2.0);
    assert_eq!(m("vugpu_fences_completed_total"), 2.0);
    assert_eq!(m("vugpu_resources"), 1.0);
}

#[test]
fn test_metrics_attached_bytes_gauge_tracks_live_backing() {
    let mut vmm = TestVmm::start(&[]);
    vmm.create_backed_2d(1, 64, 64, &page_entries(DATA_BASE, 4));
    vmm.create_backed_2d(2, 32, 32, &page_entries(DATA_BASE + 0x10_0000, 1));

    let before = vmm.metric("vugpu_attached_bytes");
    vmm.ok(&wire::detach_backing(1));
    let after = vmm.metric("vugpu_attached_bytes");

    assert_eq!(before, (5 * PAGE) as f64);
    assert_eq!(after, PAGE as f64);
    assert_eq!(vmm.metric("vugpu_host_memory_bytes"), (5 * PAGE) as f64);
}

#[test]
fn test_metrics_tcp_listener_serves_prometheus_text() {
    // Port 0 is not allowed by the contract's "127.0.0.1:PORT"; pick a free
    // port by binding and releasing it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut vmm = TestVmm::start(&["--metrics-listen", &addr]);
    vmm.ok(&wire::resource_create_2d(
        1,
        wire::FORMAT_B8G8R8A8_UNORM,
        8,
        8,
    ));

    let body = crate::common::http_get_tcp(&addr);

    assert_eq!(metric_value(&body, "vugpu_resources"), Some(1.0), "{body}");
    assert!(
        body.contains("# TYPE vugpu_detach_latency_seconds histogram"),
        "{body}"
    );
}

fn fd_options() -> VmmOptions {
    let mut opts = VmmOptions::new(&[]);
    opts.inherit_fd = true;
    opts
}

#[test]
fn test_daemon_fd_frontend_disconnect_exits_zero() {
    let mut vmm = TestVmm::start_with(fd_options());
    vmm.ok(&wire::resource_create_2d(
        1,
        wire::FORMAT_B8G8R8A8_UNORM,
        8,
        8,
    ));

    let status = vmm.disconnect_and_wait();

    assert!(
        status.success(),
        "exit status {status}:\n{}",
        vmm.daemon_log_tail()
    );
}

#[test]
fn test_daemon_fd_keeps_other_inherited_descriptors_open() {
    let mut vmm = TestVmm::start_with(fd_options());
    let pid = vmm.pid();
    let fd_path = format!("/proc/{pid}/fd/{}", crate::common::INHERITED_FD);

    let open_while_serving = std::fs::read_link(&fd_path).is_ok();
    vmm.disconnect_and_wait();
    let mut pipe = vmm.inherited_pipe.take().expect("pipe");
    let mut rest = Vec::new();
    let eof = std::io::Read::read_to_end(&mut pipe, &mut rest);

    assert!(open_while_serving, "inherited descriptor was closed");
    assert_eq!(eof.expect("pipe read"), 0);
}

#[test]
fn test_daemon_fd_listening_socket_accepts_one_frontend_then_exits_zero() {
    let mut opts = VmmOptions::new(&[]);
    opts.inherit_listener = true;
    let mut vmm = TestVmm::start_with(opts);
    let resp = vmm.ctrl(&wire::get_display_info());

    let status = vmm.disconnect_and_wait();

    assert_eq!(resp.type_(), wire::RESP_OK_DISPLAY_INFO);
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        vmm.daemon_log_tail()
    );
}

#[test]
fn test_daemon_socket_path_serves_a_fresh_device_after_disconnect() {
    let mut vmm = TestVmm::start(&[]);
    vmm.create_backed_2d(1, 64, 64, &page_entries(DATA_BASE, 4));

    vmm.reconnect();
    // Resource 1 is gone with the old device, so the id is free again.
    let resp = vmm.ctrl(&wire::resource_create_2d(
        1,
        wire::FORMAT_B8G8R8A8_UNORM,
        8,
        8,
    ));

    assert_eq!(resp.type_(), wire::RESP_OK_NODATA);
    assert_eq!(vmm.metric("vugpu_resources"), 1.0);
    assert_eq!(vmm.metric("vugpu_attached_bytes"), 0.0);
    vmm.assert_alive();
    assert!(vmm.socket().exists(), "socket file removed while serving");
}

#[test]
fn test_print_capabilities_prints_gpu_json_and_exits_zero() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vhost-user-gpu"))
        .arg("--print-capabilities")
        .output()
        .expect("run vhost-user-gpu");

    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"type":"gpu","features":[]}"#
    );
}

#[test]
fn test_daemon_without_socket_path_or_fd_fails() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vhost-user-gpu"))
        .arg("--blob")
        .output()
        .expect("run vhost-user-gpu");

    assert!(!out.status.success());
}

#[test]
fn test_daemon_sigterm_exits_zero_and_removes_socket() {
    let mut vmm = TestVmm::start(&[]);

    let status = vmm.terminate_and_wait();

    assert!(
        status.success(),
        "exit status {status}:\n{}",
        vmm.daemon_log_tail()
    );
    assert!(!vmm.socket().exists(), "socket file left behind");
}

#[test]
fn test_daemon_without_display_socket_serves_headless() {
    let mut opts = VmmOptions::new(&[]);
    opts.display = false;
    let mut vmm = TestVmm::start_with(opts);
    vmm.create_backed_2d(1, 64, 64, &page_entries(DATA_BASE, 4));

    vmm.ok(&wire::transfer_to_host_2d(1, Rect::new(0, 0, 64, 64), 0));
    vmm.ok(&wire::set_scanout(0, 1, Rect::new(0, 0, 64, 64)));
    vmm.ok(&wire::resource_flush(1, Rect::new(0, 0, 64, 64)));

    vmm.assert_alive();
}

#[test]
fn test_daemon_num_outputs_reports_that_many_scanouts_in_config() {
    let mut opts = VmmOptions::new(&["--num-outputs", "3"]);
    opts.display = false;
    let mut vmm = TestVmm::start_with(opts);

    let cfg = vmm.read_config();
    let ok = vmm.ctrl_type(&wire::set_scanout(2, 0, Rect::new(0, 0, 0, 0)));
    let bad = vmm.ctrl_type(&wire::set_scanout(3, 0, Rect::new(0, 0, 0, 0)));

    // struct virtio_gpu_config { events_read, events_clear, num_scanouts, num_capsets }
    assert_eq!(wire::le32(&cfg, 8), 3, "num_scanouts");
    assert_eq!(wire::le32(&cfg, 12), 0, "num_capsets");
    assert_eq!(ok, wire::RESP_OK_NODATA);
    assert_eq!(bad, wire::RESP_ERR_INVALID_SCANOUT_ID);
}

#[test]
fn test_daemon_sigint_exits_zero_and_removes_socket() {
    let mut vmm = TestVmm::start(&[]);

    let status = vmm.signal_and_wait(libc::SIGINT);

    assert!(
        status.success(),
        "exit status {status}:\n{}",
        vmm.daemon_log_tail()
    );
    assert!(!vmm.socket().exists(), "socket file left behind");
}

#[test]
fn test_daemon_fd_disconnect_with_resources_attached_exits_zero() {
    let mut opts = fd_options();
    opts.args.push("--blob".to_owned());
    let mut vmm = TestVmm::start_with(opts);
    vmm.create_backed_2d(1, 64, 64, &page_entries(DATA_BASE, 4));
    vmm.ok(&wire::set_scanout(0, 1, Rect::new(0, 0, 64, 64)));
    vmm.ok(&wire::resource_create_blob(
        2,
        wire::BLOB_MEM_GUEST,
        wire::BLOB_FLAG_USE_SHAREABLE,
        PAGE,
        &page_entries(DATA_BASE + 0x10_0000, 1),
    ));

    let status = vmm.disconnect_and_wait();

    assert!(
        status.success(),
        "exit status {status}:\n{}",
        vmm.daemon_log_tail()
    );
}

#[test]
fn test_daemon_stale_file_at_socket_path_is_replaced() {
    let mut opts = VmmOptions::new(&[]);
    opts.stale_socket_file = true;

    let mut vmm = TestVmm::start_with(opts);

    vmm.assert_alive();
}

#[test]
fn test_second_connection_does_not_disturb_first() {
    let mut vmm = TestVmm::start(&[]);
    vmm.ok(&wire::resource_create_2d(
        1,
        wire::FORMAT_B8G8R8A8_UNORM,
        8,
        8,
    ));

    // A second VMM tries the same socket (it may be refused or left pending).
    let second = std::os::unix::net::UnixStream::connect(vmm.socket());
    drop(second);
    let resp = vmm.ctrl(&wire::resource_unref(1));

    assert_eq!(resp.type_(), wire::RESP_OK_NODATA);
    vmm.assert_alive();
}

#[test]
fn test_metrics_log_interval_writes_json_lines() {
    let mut vmm = TestVmm::start(&["--metrics-log-interval", "1"]);
    vmm.create_backed_2d(1, 64, 64, &page_entries(DATA_BASE, 4));

    let line = vmm.wait_for_log("\"attach_backing_total\":1");

    let json = &line[line.find('{').expect("JSON object in the log line")..];
    assert!(json.trim_end().ends_with('}'), "{line}");
    assert!(json.contains("\"resources\":1"), "{line}");
}

#[test]
fn test_daemon_invalid_arguments_exit_nonzero_without_socket() {
    let dir = std::env::temp_dir().join(format!("vugpu-it-args-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let socket = dir.join("gpu.sock");

    // 17 outputs is more than virtio-gpu's 16 scanouts.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_vhost-user-gpu"))
        .args(["--socket-path", socket.to_str().expect("utf-8 path")])
        .args(["--num-outputs", "17"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run daemon");

    assert!(!status.success());
    assert!(!socket.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn test_config_events_clear_write_is_accepted() {
    let mut vmm = TestVmm::start(&[]);

    // struct virtio_gpu_config: events_clear at offset 4 is driver-writable.
    let result = vmm.write_config(4, &1u32.to_le_bytes());

    assert!(result.is_ok(), "{result:?}");
    assert_eq!(wire::le32(&vmm.read_config(), 0), 0, "events_read");
}

#[test]
fn test_config_whole_struct_write_like_qemu_keeps_connection() {
    let mut vmm = TestVmm::start(&["--num-outputs", "2"]);
    // QEMU's vhost_user_gpu_set_config writes all 16 bytes at offset 0:
    // events_read 0, events_clear 1, num_scanouts 2, num_capsets 0.
    let mut config = Vec::new();
    for v in [0u32, 1, 2, 0] {
        config.extend_from_slice(&v.to_le_bytes());
    }

    let result = vmm.write_config(0, &config);

    assert!(result.is_ok(), "{result:?}");
    assert_eq!(wire::le32(&vmm.read_config(), 8), 2);
    vmm.assert_alive();
}

#[test]
fn test_config_num_scanouts_write_is_ignored_without_dropping_connection() {
    let mut vmm = TestVmm::start(&["--num-outputs", "2"]);

    // num_scanouts (offset 8) is read-only for the driver. vhost-user-backend
    // closes the connection on any handler error, so refusing with an
    // error would kill the device: the write must be ignored instead.
    let _ = vmm.write_config(8, &7u32.to_le_bytes());

    assert_eq!(wire::le32(&vmm.read_config(), 8), 2);
    vmm.assert_alive();
}

#[test]
fn test_headless_generic_device_offers_every_feature_itself_and_answers_get_config() {
    // As behind QEMU 10.2's vhost-user-test-device-pci: no display socket,
    // no features added by QEMU.
    let mut opts = VmmOptions::new(&["--blob", "--num-outputs", "2"]);
    opts.display = false;
    let mut vmm = TestVmm::start_with(opts);

    let offered = vhost::VhostBackend::get_features(vmm.frontend()).expect("GET_FEATURES");
    let config = vmm.read_config();
    let info = vmm.ctrl_type(&wire::get_display_info());

    for (bit, name) in [
        (32, "VERSION_1"),
        (29, "EVENT_IDX"),
        (28, "INDIRECT_DESC"),
        (3, "RESOURCE_BLOB"),
        (1, "EDID"),
        (2, "RESOURCE_UUID"),
        (23, "BLOB_SWAP"),
    ] {
        assert_ne!(offered & (1u64 << bit), 0, "{name} not offered");
    }
    // events_read 0, events_clear 0, num_scanouts 2, num_capsets 0.
    assert_eq!(config, [0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(info, wire::RESP_OK_DISPLAY_INFO);
}

#[test]
fn test_no_blob_swap_withholds_the_feature() {
    let mut vmm = TestVmm::start(&["--blob", "--no-blob-swap"]);

    let offered = vhost::VhostBackend::get_features(vmm.frontend()).expect("GET_FEATURES");

    assert_eq!(offered & (1u64 << 23), 0);
    assert_ne!(offered & (1u64 << 3), 0);
}

/// (VmRSS in KiB, open descriptors, mappings of the test's guest memory)
/// of process `pid`.
fn footprint(pid: u32) -> (u64, usize, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .count();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let guest = maps.lines().filter(|l| l.contains("vugpu-test")).count();
    (rss, fds, guest)
}

/// What the descriptors of `pid` point to, for failure messages.
fn open_fds(pid: u32) -> String {
    let mut targets: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|t| t.display().to_string())
                .collect()
        })
        .unwrap_or_default();
    targets.sort();
    targets.join(" ")
}

/// Waits (bounded) until the daemon has torn down its last connection: no
/// guest memory mapped and the descriptor count unchanged for 200 ms.
fn settle(pid: u32) -> (u64, usize, usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut last = footprint(pid);
    let mut stable = 0;
    while std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let now = footprint(pid);
        stable = if now.1 == last.1 && now.2 == 0 {
            stable + 1
        } else {
            0
        };
        last = now;
        if stable >= 10 {
            break;
        }
    }
    last
}

#[test]
fn test_hundred_connect_disconnect_cycles_return_to_the_starting_footprint() {
    let mut vmm = TestVmm::start(&["--blob"]);
    let pid = vmm.pid();
    // Warm-up cycle: thread stacks, allocator arenas and lazy statics of a
    // first connection are not a leak.
    vmm.create_backed_2d(1, 64, 64, &page_entries(DATA_BASE, 4));
    vmm.disconnect();
    let (rss_start, fds_start, _) = settle(pid);

    for i in 0..100u32 {
        vmm.reconnect();
        vmm.create_backed_2d(1, 64, 64, &page_entries(DATA_BASE, 4));
        vmm.ok(&wire::transfer_to_host_2d(1, Rect::new(0, 0, 64, 64), 0));
        vmm.ok(&wire::resource_create_blob(
            2,
            wire::BLOB_MEM_GUEST,
            wire::BLOB_FLAG_USE_SHAREABLE,
            PAGE,
            &page_entries(DATA_BASE + 0x10_0000 + u64::from(i % 4) * PAGE, 1),
        ));
        vmm.ok(&wire::set_scanout(0, 1, Rect::new(0, 0, 64, 64)));
    }
    vmm.disconnect();
    let (rss_end, fds_end, guest_maps) = settle(pid);
    vmm.reconnect();

    vmm.assert_alive();
    assert_eq!(
        fds_end,
        fds_start,
        "descriptors leaked ({guest_maps} guest maps): {}",
        open_fds(pid)
    );
    assert_eq!(
        guest_maps, 0,
        "guest memory of old connections still mapped"
    );
    // Allocator noise only: a leaked 64 MiB guest mapping or a device per
    // connection would be far above this.
    assert!(
        rss_end <= rss_start + 4096,
        "RSS grew from {rss_start} KiB to {rss_end} KiB"
    );
}

#[test]
fn test_install_script_puts_binary_and_descriptor_under_the_prefix() {
    let prefix = std::env::temp_dir().join(format!("vugpu-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&prefix);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../ci/install-daemon.sh");

    let out = std::process::Command::new(script)
        .arg("--prefix")
        .arg(&prefix)
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_vhost-user-gpu"))
        .output()
        .expect("run install-daemon.sh");

    assert!(out.status.success(), "{out:?}");
    let descriptor = prefix.join("share/qemu/vhost-user/40-vhost-user-gpu-rs.json");
    let json = std::fs::read_to_string(&descriptor).expect("descriptor");
    let binary = prefix.join("libexec/vhost-user-gpu-rs");
    assert!(json.contains(r#""type": "gpu""#), "{json}");
    assert!(
        json.contains(&format!(r#""binary": "{}""#, binary.display())),
        "{json}"
    );
    // Sorts before QEMU's own descriptor, so libvirt tries it first.
    assert!("40-vhost-user-gpu-rs.json" < "50-qemu-gpu.json");
    let caps = std::process::Command::new(&binary)
        .arg("--print-capabilities")
        .output()
        .expect("installed binary runs");
    assert!(caps.status.success());
    let _ = std::fs::remove_dir_all(&prefix);
}
