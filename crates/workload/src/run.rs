//! The workload itself: create, fill, pressure, reuse and verify.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::args::{Config, Kind, ROW_BYTES};
use crate::drm::{self, Card};
use crate::error::{chain_to_string, WorkloadError};
use crate::kmsg::{KernelLog, KmsgWatch};
use crate::pattern;
use crate::progress;
use crate::report::{
    DeviceParams, DeviceRead, KernelLogReport, PsiPhase, ReclaimCheck, Report, Steps, SwapPhases,
    SwapRatio,
};
use crate::sysinfo::{self, Counters, Psi};

/// One buffer object the run created. Kept small: the run may hold thousands.
#[derive(Debug, Clone, Copy)]
struct Object {
    /// GEM handle.
    handle: u32,
    /// Marked DONTNEED and not yet WILLNEED again.
    dontneed: bool,
    /// Found purged at WILLNEED: its content is gone, it is not used again.
    purged: bool,
}

/// Geometry shared by every object of a run.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    bytes: u64,
    len: usize,
    width: u32,
    height: u32,
}

impl Geometry {
    fn new(object_bytes: u64) -> Result<Self, WorkloadError> {
        if object_bytes == 0 || !object_bytes.is_multiple_of(ROW_BYTES) {
            return Err(WorkloadError::Config(format!(
                "object size {object_bytes} is not a positive multiple of {ROW_BYTES}"
            )));
        }
        let too_big = || WorkloadError::Config(format!("object size {object_bytes} too large"));
        let len = usize::try_from(object_bytes).map_err(|_| too_big())?;
        let height = u32::try_from(object_bytes / ROW_BYTES).map_err(|_| too_big())?;
        let width =
            u32::try_from(ROW_BYTES / u64::from(drm::BYTES_PER_PIXEL)).map_err(|_| too_big())?;
        Ok(Self {
            bytes: object_bytes,
            len,
            width,
            height,
        })
    }
}

/// Size of the untimed warm-up pass of `--swap-ratio`, as a multiple of
/// MemTotal: whichever phase meets memory pressure first in a boot is
/// slower, so neither measured phase may be the first.
pub const WARMUP_RAM_RATIO: f64 = 1.2;

/// Pattern chunk of the anonymous phase of `--swap-ratio`: each 4 MiB of
/// anonymous memory is filled and checked like one object, with object
/// indices from [`ANON_OBJECT_BASE`] so they differ from the BOs' content.
const ANON_CHUNK_BYTES: usize = 4 << 20;
/// First pattern object index of the anonymous chunks.
const ANON_OBJECT_BASE: u64 = 1 << 32;

/// Where the shrinker debugfs directories are (`CONFIG_SHRINKER_DEBUG`).
const SHRINKER_DEBUGFS: &str = "/sys/kernel/debug/shrinker";
/// Name prefix of the virtio-gpu shrinker (`drm-virtio-gpu:<device>-<id>`).
const SHRINKER_PREFIX: &str = "drm-virtio-gpu";
/// The reclaim check brings back objects of up to this share of MemTotal.
const RECLAIM_CHECK_RAM_SHARE: f64 = 0.4;
/// At most this many forced scans in the reclaim check.
const FORCED_SCANS_MAX: u32 = 40;
/// Stop the forced scans after this many in a row freed nothing.
const FORCED_SCANS_IDLE: u32 = 5;
/// Pause after each forced scan: an eviction is a DETACH the device
/// answers, and a later scan releases the pages.
const FORCED_SCAN_PAUSE: Duration = Duration::from_millis(20);

/// Start of a measured `--swap-ratio` phase: its clock, `/proc/vmstat`
/// and `/proc/pressure/memory`.
struct SwapMark {
    at: Instant,
    vmstat: Counters,
    psi: Option<Psi>,
    shrinker: Option<Counters>,
}

impl SwapMark {
    fn now(shrinker_file: &Path) -> Self {
        Self {
            shrinker: sysinfo::read_shrinker(shrinker_file),
            psi: sysinfo::read_memory_psi(),
            vmstat: sysinfo::read_vmstat(),
            at: Instant::now(),
        }
    }

    /// The shrinker counters' deltas since the mark, `None` without the
    /// file.
    fn shrinker(&self, shrinker_file: &Path) -> Option<Counters> {
        let end = sysinfo::read_shrinker(shrinker_file)?;
        Some(sysinfo::delta(self.shrinker.as_ref()?, &end))
    }

    /// The memory stall since the mark, `None` without PSI.
    fn psi(&self) -> Option<PsiPhase> {
        let end = sysinfo::read_memory_psi()?;
        Some(PsiPhase::between(self.psi.as_ref()?, &end))
    }

    /// `(pages, seconds)` since the mark, counting `key` (`pswpout` or
    /// `pswpin`).
    fn since(&self, key: &str) -> (u64, f64) {
        let secs = self.at.elapsed().as_secs_f64();
        let d = sysinfo::delta(&self.vmstat, &sysinfo::read_vmstat());
        (d.get(key).copied().unwrap_or(0), secs)
    }
}

/// Per-step time accumulated over a phase (see [`Steps`]).
#[derive(Debug, Clone, Copy, Default)]
struct StepClock {
    create: Duration,
    map: Duration,
    cpu: Duration,
    unmap: Duration,
    transfer: Duration,
    wait: Duration,
}

impl StepClock {
    fn secs(&self) -> Steps {
        Steps {
            create: self.create.as_secs_f64(),
            map: self.map.as_secs_f64(),
            cpu: self.cpu.as_secs_f64(),
            unmap: self.unmap.as_secs_f64(),
            transfer: self.transfer.as_secs_f64(),
            wait: self.wait.as_secs_f64(),
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Prints a progress line on stderr (the guest console).
fn progress(phase: &str, done: u64, total: u64) {
    let step = (total / 8).max(1);
    if done == total || done.is_multiple_of(step) {
        eprintln!("vugpu-workload: {phase} {done}/{total}");
    }
}

/// Counters sampled at the start and at the end of a run.
struct Snapshot {
    vmstat: Counters,
    shrinker: Option<Counters>,
}

impl Snapshot {
    fn take(cfg: &Config) -> Self {
        Self {
            vmstat: sysinfo::read_vmstat(),
            shrinker: sysinfo::read_shrinker(&cfg.shrinker_file),
        }
    }
}

/// Runs the workload described by `cfg` and returns its report. Never panics
/// on device errors: every error ends up in `report.error` with
/// `result = "fail"`.
pub fn run(cfg: &Config) -> Report {
    let mem = sysinfo::read_meminfo();
    let mut report = Report {
        tool: "vugpu-workload",
        tool_version: env!("CARGO_PKG_VERSION"),
        scenario: cfg.scenario.clone(),
        kind: cfg.kind.as_str(),
        smoke: cfg.smoke,
        kernel: sysinfo::kernel_release(),
        ram_bytes: mem.mem_total,
        mem_available_bytes: mem.mem_available,
        swap_total_bytes: mem.swap_total,
        seed: cfg.seed,
        object_bytes: cfg.object_bytes,
        dontneed_every: cfg.dontneed_every,
        rounds: cfg.rounds,
        result: "fail",
        ..Default::default()
    };
    let start = Snapshot::take(cfg);
    let sampler = cfg
        .progress
        .map(|p| progress::Sampler::start(p, cfg.shrinker_file.clone()));
    let mut kmsg = KmsgWatch::start(&cfg.kmsg)
        .inspect_err(|e| eprintln!("vugpu-workload: not watching {}: {e}", cfg.kmsg.display()))
        .ok();
    let outcome = Workload::new(cfg, &mut report).and_then(|mut w| {
        let r = w.execute();
        // Also after a failure: the objects the device read so far.
        w.report_reads();
        r
    });
    progress::set_phase("done");
    drop(sampler);
    let end = Snapshot::take(cfg);
    let mut klog = KernelLog::default();
    report.kernel_log = kmsg
        .as_mut()
        .and_then(|k| {
            k.collect(&mut klog)
                .inspect_err(|e| eprintln!("vugpu-workload: reading {}: {e}", cfg.kmsg.display()))
                .ok()
        })
        .map(|()| KernelLogReport {
            device_errors: klog.device_errors,
            warnings: klog.warnings,
            overruns: klog.overruns,
            device_error_lines: klog.device_error_lines.clone(),
            warning_lines: klog.warning_lines.clone(),
        });

    report.vmstat = sysinfo::delta(&start.vmstat, &end.vmstat);
    report.shrinker = match (&start.shrinker, &end.shrinker) {
        (Some(s), Some(e)) => Some(sysinfo::delta(s, e)),
        (None, Some(e)) => Some(e.clone()),
        _ => None,
    };
    let outcome = match outcome {
        Ok(()) if report.mismatched_bytes > 0 => Err(WorkloadError::Mismatch {
            objects: report.mismatched_objects,
            bytes: report.mismatched_bytes,
        }),
        Ok(()) if klog.device_errors > 0 => Err(WorkloadError::DeviceErrors {
            count: klog.device_errors,
            first: klog.device_error_lines.first().cloned().unwrap_or_default(),
        }),
        Ok(()) if klog.warnings > 0 => Err(WorkloadError::KernelWarnings {
            count: klog.warnings,
            first: klog.warning_lines.first().cloned().unwrap_or_default(),
        }),
        other => other,
    };
    match outcome {
        Ok(()) => report.result = "pass",
        Err(e) => {
            report.error = Some(chain_to_string(&e));
            report.result = "fail";
        }
    }
    report
}

/// The display path blobs are shown through: the first CRTC and connector
/// and the framebuffer on screen.
#[derive(Debug, Clone, Copy)]
struct Kms {
    crtc: u32,
    connector: u32,
    shown: Option<u32>,
}

/// A run in progress: the card, the objects and the report being filled in.
struct Workload<'a> {
    cfg: &'a Config,
    report: &'a mut Report,
    card: Card,
    geo: Geometry,
    objects: Vec<Object>,
    kms: Option<Kms>,
    /// Per object, what the device was made to read (`--device-digests`).
    reads: Vec<Option<DeviceRead>>,
    /// WAIT after every device use (always, except in `--swap-ratio`
    /// without `--swap-ratio-wait-each`).
    wait_each: bool,
    /// The last object sent to the device and not waited for.
    unwaited: Option<(u64, u32)>,
    /// Time per step of the current phase.
    steps: StepClock,
}

impl<'a> Workload<'a> {
    /// Opens the card, records its identity and parameters, probes MADVISE and
    /// checks the configuration against what the device offers.
    fn new(cfg: &'a Config, report: &'a mut Report) -> Result<Self, WorkloadError> {
        let geo = Geometry::new(cfg.object_bytes)?;
        let count = cfg.sizing.object_count(geo.bytes, report.ram_bytes)?;
        report.objects_planned = count;

        let card = Card::open(&cfg.card).map_err(|source| WorkloadError::OpenCard {
            path: cfg.card.clone(),
            source,
        })?;
        let version = card
            .version()
            .map_err(|source| WorkloadError::DeviceIoctl {
                op: "DRM_IOCTL_VERSION",
                source,
            })?;
        report.driver = Some(format!("{} {}", version.name, version.version));
        let param = |p| card.getparam(p).ok().map(|v| v != 0);
        report.params = DeviceParams {
            virgl_3d: param(drm::VIRTGPU_PARAM_3D_FEATURES),
            resource_blob: param(drm::VIRTGPU_PARAM_RESOURCE_BLOB),
            host_visible: param(drm::VIRTGPU_PARAM_HOST_VISIBLE),
            context_init: param(drm::VIRTGPU_PARAM_CONTEXT_INIT),
        };
        report.madvise_supported = card
            .probe_madvise()
            .map_err(|source| WorkloadError::MadviseProbe { source })?;

        let mut dontneed_every = cfg.dontneed_every;
        if cfg.smoke {
            // Smoke exercises MADVISE (DONTNEED then WILLNEED without
            // pressure) where the kernel has it, and never requires it.
            dontneed_every = u64::from(cfg.use_madvise && report.madvise_supported);
        } else if dontneed_every > 0 && !report.madvise_supported {
            return Err(WorkloadError::MadviseUnsupported);
        }
        report.dontneed_every = dontneed_every;
        report.madvise_used = dontneed_every > 0;

        if cfg.kind == Kind::Blob && report.params.resource_blob != Some(true) {
            return Err(WorkloadError::BlobUnsupported);
        }
        // Blobs are read by the device in place, only when scanned out: the
        // run shows each one on the first CRTC (it is DRM master, being the
        // card's first opener).
        let kms = if cfg.kind == Kind::Blob && !cfg.smoke {
            let (crtc, connector) =
                card.first_crtc_and_connector()
                    .map_err(|source| WorkloadError::DeviceIoctl {
                        op: "DRM_IOCTL_MODE_GETRESOURCES",
                        source,
                    })?;
            Some(Kms {
                crtc,
                connector,
                shown: None,
            })
        } else {
            None
        };
        let capacity = usize::try_from(count)
            .map_err(|_| WorkloadError::Config(format!("object count {count} too large")))?;
        eprintln!(
            "vugpu-workload: scenario {} kernel {} driver {} madvise {} ram {} MiB swap {} MiB: {} {} objects of {} KiB",
            cfg.scenario,
            report.kernel,
            report.driver.as_deref().unwrap_or("?"),
            report.madvise_supported,
            report.ram_bytes >> 20,
            report.swap_total_bytes >> 20,
            count,
            cfg.kind.as_str(),
            geo.bytes >> 10,
        );
        Ok(Self {
            cfg,
            report,
            card,
            geo,
            objects: Vec::with_capacity(capacity),
            kms,
            reads: Vec::new(),
            wait_each: !cfg.swap_ratio || cfg.swap_ratio_wait_each,
            unwaited: None,
            steps: StepClock::default(),
        })
    }

    fn execute(&mut self) -> Result<(), WorkloadError> {
        if self.cfg.swap_ratio {
            return self.execute_swap_ratio();
        }
        progress::set_phase("fill");
        self.create_and_fill()?;
        progress::set_phase("pressure");
        self.pressure()?;
        if !self.cfg.settle.is_zero() {
            progress::set_phase("settle");
            eprintln!(
                "vugpu-workload: settling for {} ms",
                self.cfg.settle.as_millis()
            );
            std::thread::sleep(self.cfg.settle);
        }
        progress::set_phase("reuse");
        self.reuse_and_verify()?;
        progress::set_phase("teardown");
        self.teardown()
    }

    /// `--swap-ratio`: warm-up, anonymous memory, then the objects, all of
    /// the same total size on the same swap disk; the BO phases are the
    /// ordinary create + fill and reuse + verify (one transfer per object
    /// each).
    fn execute_swap_ratio(&mut self) -> Result<(), WorkloadError> {
        let bytes = self.report.objects_planned.saturating_mul(self.geo.bytes);
        // Float to integer: `as` saturates; whole pages.
        let warmup = ((self.report.ram_bytes as f64 * WARMUP_RAM_RATIO) as u64) & !4095;
        progress::set_phase("pressure");
        eprintln!("vugpu-workload: swap-ratio warm-up {} MiB", warmup >> 20);
        touch_anonymous(warmup).map_err(|source| WorkloadError::Pressure {
            bytes: warmup,
            source,
        })?;
        eprintln!("vugpu-workload: swap-ratio anonymous {} MiB", bytes >> 20);
        let anon = anon_swap_phases(bytes, self.cfg.seed, &self.cfg.shrinker_file)?;

        // BO write phase: allocate (create) + dirty (map, fill, unmap),
        // plus what only an object needs, handing it to the device
        // (TRANSFER, which attaches the backing). One WAIT at the end.
        progress::set_phase("fill");
        self.steps = StepClock::default();
        let mark = SwapMark::now(&self.cfg.shrinker_file);
        self.create_and_fill()?;
        self.wait_last()?;
        let (written_pages, write_secs) = mark.since("pswpout");
        let write_psi = mark.psi();
        let write_shrinker = mark.shrinker(&self.cfg.shrinker_file);
        let write_steps = std::mem::take(&mut self.steps).secs();
        // BO read phase: map, check (swap-in faults), unmap, TRANSFER
        // (re-attach), one WAIT at the end.
        progress::set_phase("reuse");
        let mark = SwapMark::now(&self.cfg.shrinker_file);
        self.reuse_and_verify()?;
        self.wait_last()?;
        let (read_pages, read_secs) = mark.since("pswpin");
        let read_psi = mark.psi();
        let read_shrinker = mark.shrinker(&self.cfg.shrinker_file);
        let read_steps = std::mem::take(&mut self.steps).secs();
        let bo = SwapPhases {
            written_pages,
            write_secs,
            read_pages,
            read_secs,
            write_psi,
            read_psi,
            write_steps,
            read_steps,
            write_shrinker,
            read_shrinker,
        };
        let mut r = SwapRatio::new(bytes, warmup, anon, bo);
        r.wait_each = self.wait_each;
        eprintln!(
            "vugpu-workload: swap-ratio BO/anonymous pages/s written {:?}, read {:?}; full stall written {:?}, read {:?}",
            r.written_ratio, r.read_ratio, r.write_stall_ratio, r.read_stall_ratio
        );
        self.report.swap_ratio = Some(r);
        progress::set_phase("pressure");
        let check = self.reclaim_check()?;
        eprintln!(
            "vugpu-workload: reclaim check: {} of {} KiB evictable reclaimed under pressure ({:?} %), {:?} KiB resident after {} forced scans",
            check
                .evictable_bytes
                .saturating_sub(check.resident_under_pressure_bytes)
                >> 10,
            check.evictable_bytes >> 10,
            check.reclaimed_under_pressure_pct,
            check.resident_after_forced_scan_bytes.map(|b| b >> 10),
            check.forced_scans
        );
        if let Some(r) = self.report.swap_ratio.as_mut() {
            r.reclaim = Some(check);
        }
        progress::set_phase("teardown");
        self.teardown()?;
        // The anonymous phases again, with the objects gone: the two passes
        // bracket the BO phases in time.
        eprintln!(
            "vugpu-workload: swap-ratio anonymous again {} MiB",
            bytes >> 20
        );
        progress::set_phase("pressure");
        let after = anon_swap_phases(bytes, self.cfg.seed, &self.cfg.shrinker_file)?;
        if let Some(r) = self.report.swap_ratio.as_mut() {
            r.set_anon_after(after);
            eprintln!(
                "vugpu-workload: swap-ratio against both anonymous passes: written {:?}, read {:?}; second/first anonymous pass written {:?}, read {:?}",
                r.written_ratio, r.read_ratio, r.anon_after_written_ratio, r.anon_after_read_ratio
            );
        }
        Ok(())
    }

    /// WAITs for the last object sent to the device without a WAIT (the
    /// control queue completes in order, so the earlier ones are done too).
    fn wait_last(&mut self) -> Result<(), WorkloadError> {
        let Some((index, handle)) = self.unwaited.take() else {
            return Ok(());
        };
        let t = Instant::now();
        let r = self.card.wait(handle);
        self.steps.wait += t.elapsed();
        r.map_err(|source| WorkloadError::ObjectIoctl {
            op: "DRM_IOCTL_VIRTGPU_WAIT",
            object: index,
            source,
        })
    }

    /// Resident bytes of this client's objects and their total size, from
    /// the card's fdinfo.
    fn client_memory(&self) -> Result<(u64, u64), WorkloadError> {
        let err = |msg: &str| WorkloadError::DeviceIoctl {
            op: "read the DRM fdinfo",
            source: io::Error::new(io::ErrorKind::InvalidData, msg.to_owned()),
        };
        let text = self
            .card
            .fdinfo()
            .map_err(|source| WorkloadError::DeviceIoctl {
                op: "read the DRM fdinfo",
                source,
            })?;
        let total = sysinfo::parse_fdinfo_bytes(&text, "drm-total-memory")
            .ok_or_else(|| err("no drm-total-memory"))?;
        // drm_show_memory_stats() prints the resident line only when some
        // object reports itself resident: no line means none is.
        let resident = sysinfo::parse_fdinfo_bytes(&text, "drm-resident-memory").unwrap_or(0);
        Ok((resident, total))
    }

    /// `--swap-ratio`, after the read phase: how much of the objects'
    /// evictable memory pressure really reclaims. Evictable = the resident
    /// bytes of the run's objects (all idle, unpinned 2D objects), after
    /// the last objects of up to 40% of RAM were used again. The
    /// pressure is MemTotal of anonymous memory, touched and held while the
    /// objects' resident bytes are read again; then, with the pressure
    /// released, the shrinker's debugfs `scan` is written until it frees
    /// nothing more, to tell what pressure left from what cannot go.
    fn reclaim_check(&mut self) -> Result<ReclaimCheck, WorkloadError> {
        // The read phase ends with most objects evicted again; bring the
        // last ones back (a TRANSFER swaps them in and attaches them) up
        // to RECLAIM_CHECK_RAM_SHARE of RAM, and let them go idle.
        let fit = (self.report.ram_bytes as f64 * RECLAIM_CHECK_RAM_SHARE) as u64 / self.geo.bytes;
        let total_objects = u64::try_from(self.objects.len()).unwrap_or(u64::MAX);
        let first = total_objects.saturating_sub(fit);
        for (index, slot) in (first..total_objects).zip(usize::try_from(first).unwrap_or(0)..) {
            let Some(obj) = self.objects.get(slot).copied() else {
                break;
            };
            if obj.purged || obj.dontneed {
                continue;
            }
            self.send_to_device(index, obj.handle)?;
        }
        self.wait_last()?;
        let (evictable, total) = self.client_memory()?;
        let mut c = ReclaimCheck {
            brought_back_objects: total_objects - first,
            evictable_bytes: evictable,
            total_bytes: total,
            pressure_bytes: self.report.ram_bytes & !4095,
            ..Default::default()
        };
        let before = sysinfo::read_shrinker(&self.cfg.shrinker_file);
        let bytes = c.pressure_bytes;
        let mark = SwapMark::now(&self.cfg.shrinker_file);
        let mut map =
            AnonMap::new(bytes).map_err(|source| WorkloadError::Pressure { bytes, source })?;
        for page in map.words_mut().chunks_mut(512) {
            if let Some(w) = page.first_mut() {
                // SAFETY: `w` is a valid, exclusive reference into the mapping.
                unsafe { std::ptr::write_volatile(w, 1) };
            }
        }
        c.pressure_secs = mark.at.elapsed().as_secs_f64();
        c.pressure_psi = mark.psi();
        let under = self.client_memory();
        drop(map);
        let (resident, _) = under?;
        c.resident_under_pressure_bytes = resident;
        c.reclaimed_under_pressure_pct = (evictable > 0)
            .then(|| evictable.saturating_sub(resident) as f64 * 100.0 / evictable as f64);
        let after = sysinfo::read_shrinker(&self.cfg.shrinker_file);
        let evicted = |c: &Option<Counters>| {
            c.as_ref()
                .and_then(|c| c.get("evicted_bytes").copied())
                .unwrap_or(0)
        };
        c.shrinker_evicted_bytes = evicted(&after).saturating_sub(evicted(&before));
        self.forced_scan(&mut c, resident)?;
        Ok(c)
    }

    /// Writes the shrinker's debugfs `scan` file (`<memcg> <node>
    /// <nr_to_scan>`, pages) until the objects' resident bytes stop falling.
    fn forced_scan(&mut self, c: &mut ReclaimCheck, resident: u64) -> Result<(), WorkloadError> {
        let Some(dir) = sysinfo::find_shrinker_dir(Path::new(SHRINKER_DEBUGFS), SHRINKER_PREFIX)
        else {
            c.forced_scan_error = Some(format!("no {SHRINKER_PREFIX}* under {SHRINKER_DEBUGFS}"));
            return Ok(());
        };
        let scan = dir.join("scan");
        let mut last = resident;
        let mut idle = 0;
        while last > 0 && c.forced_scans < FORCED_SCANS_MAX && idle < FORCED_SCANS_IDLE {
            let pages = last / 4096 + 1;
            if let Err(e) = std::fs::write(&scan, format!("0 0 {pages}")) {
                c.forced_scan_error = Some(format!("writing {}: {e}", scan.display()));
                break;
            }
            c.forced_scans += 1;
            std::thread::sleep(FORCED_SCAN_PAUSE);
            let (now, _) = self.client_memory()?;
            idle = if now < last { 0 } else { idle + 1 };
            last = now;
        }
        c.resident_after_forced_scan_bytes = Some(last);
        Ok(())
    }

    /// Phase 4: close every object, then wait for a fenced command queued
    /// after the resulting RESOURCE_UNREFs (and the last unfenced 2D
    /// transfers): the control queue completes in order, so once that fence
    /// signals the driver has logged any error response of the run.
    fn teardown(&mut self) -> Result<(), WorkloadError> {
        let t = Instant::now();
        if let Some(fb) = self.kms.as_mut().and_then(|k| k.shown.take()) {
            self.card
                .remove_fb(fb)
                .map_err(|source| WorkloadError::DeviceIoctl {
                    op: "DRM_IOCTL_MODE_RMFB",
                    source,
                })?;
        }
        for (index, obj) in (0u64..).zip(std::mem::take(&mut self.objects)) {
            self.card
                .gem_close(obj.handle)
                .map_err(|source| WorkloadError::ObjectIoctl {
                    op: "DRM_IOCTL_GEM_CLOSE",
                    object: index,
                    source,
                })?;
        }
        let sync_err = |op, source| WorkloadError::DeviceIoctl { op, source };
        // One page: 1024 x 1 pixels of B8G8R8X8.
        let (handle, _) = self
            .card
            .resource_create_2d(self.geo.width, 1)
            .map_err(|e| sync_err("DRM_IOCTL_VIRTGPU_RESOURCE_CREATE (sync)", e))?;
        let waited = self
            .card
            .wait(handle)
            .map_err(|e| sync_err("DRM_IOCTL_VIRTGPU_WAIT (sync)", e));
        let closed = self
            .card
            .gem_close(handle)
            .map_err(|e| sync_err("DRM_IOCTL_GEM_CLOSE (sync)", e));
        self.report.phases_ms.teardown = ms(t.elapsed());
        waited.and(closed)
    }

    /// Phase 1: create each object, fill it through a mapping, send it to the
    /// device, unmap it, and mark it DONTNEED if it is one of every K.
    /// Create and fill are interleaved per object (so the first objects can
    /// already be evicted while later ones are created) and timed separately.
    fn create_and_fill(&mut self) -> Result<(), WorkloadError> {
        let total = self.report.objects_planned;
        let mut create = Duration::ZERO;
        let mut fill = Duration::ZERO;
        for index in 0..total {
            let t = Instant::now();
            let created = match self.cfg.kind {
                Kind::TwoD => self
                    .card
                    .resource_create_2d(self.geo.width, self.geo.height),
                Kind::Blob => self.card.resource_create_guest_blob(self.geo.bytes),
            };
            create += t.elapsed();
            self.steps.create += t.elapsed();
            self.report.phases_ms.create = ms(create);
            let (handle, _res) = created.map_err(|source| WorkloadError::ObjectIoctl {
                op: match self.cfg.kind {
                    Kind::TwoD => "DRM_IOCTL_VIRTGPU_RESOURCE_CREATE",
                    Kind::Blob => "DRM_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB",
                },
                object: index,
                source,
            })?;
            let dontneed =
                self.report.dontneed_every > 0 && (index + 1) % self.report.dontneed_every == 0;
            self.objects.push(Object {
                handle,
                dontneed,
                purged: false,
            });
            self.report.objects += 1;
            self.report.object_bytes_total += self.geo.bytes;

            let t = Instant::now();
            let r = self.fill_one(index, handle, dontneed);
            fill += t.elapsed();
            self.report.phases_ms.fill = ms(fill);
            r?;
            progress("create+fill", index + 1, total);
        }
        Ok(())
    }

    fn fill_one(&mut self, index: u64, handle: u32, dontneed: bool) -> Result<(), WorkloadError> {
        let err = |op, source| WorkloadError::ObjectIoctl {
            op,
            object: index,
            source,
        };
        let t = Instant::now();
        let offset = self
            .card
            .map_offset(handle)
            .map_err(|e| err("DRM_IOCTL_VIRTGPU_MAP", e))?;
        let mut map = self
            .card
            .mmap(offset, self.geo.len)
            .map_err(|e| err("mmap", e))?;
        self.steps.map += t.elapsed();
        let t = Instant::now();
        let words = map.words_mut();
        pattern::fill(words, self.cfg.seed, index);
        self.steps.cpu += t.elapsed();
        if self.cfg.inject_corruption == Some(index) {
            // Negative control: one wrong byte in the middle of the object
            // that the reuse phase must find.
            let mid = words.len() / 2;
            if let Some(w) = words.get_mut(mid) {
                *w ^= 0xff;
            }
            eprintln!("vugpu-workload: injected a corrupt byte into object {index}");
        }
        self.send_to_device(index, handle)?;
        let t = Instant::now();
        drop(map);
        self.steps.unmap += t.elapsed();
        if dontneed {
            self.card
                .madvise(handle, drm::VIRTGPU_MADV_DONTNEED)
                .map_err(|e| err("DRM_IOCTL_VIRTGPU_MADVISE(DONTNEED)", e))?;
            self.report.madvise.dontneed += 1;
        }
        Ok(())
    }

    /// Makes the device read the whole object, then WAITs: TRANSFER_TO_HOST
    /// for 2D (6.12 rejects it for guest blobs); for blobs, which the device
    /// reads in place, a framebuffer shown on the CRTC (SET_SCANOUT_BLOB +
    /// RESOURCE_FLUSH) and flushed again (DIRTYFB). Either way a patched
    /// guest must re-attach evicted backing first. With `--device-digests`
    /// the read is recorded for the host-side content check.
    fn send_to_device(&mut self, index: u64, handle: u32) -> Result<(), WorkloadError> {
        let err = |op, source| WorkloadError::ObjectIoctl {
            op,
            object: index,
            source,
        };
        match self.kms {
            None if self.cfg.kind == Kind::TwoD => {
                let t = Instant::now();
                let r = self
                    .card
                    .transfer_to_host_2d(handle, self.geo.width, self.geo.height);
                self.steps.transfer += t.elapsed();
                r.map_err(|e| err("DRM_IOCTL_VIRTGPU_TRANSFER_TO_HOST", e))?;
                self.report.transfers += 1;
            }
            None => {}
            Some(mut kms) => {
                let (w, h) = (self.geo.width, self.geo.height);
                let fb = self
                    .card
                    .add_fb(handle, w, h)
                    .map_err(|e| err("DRM_IOCTL_MODE_ADDFB2", e))?;
                let shown = self
                    .card
                    .set_crtc(kms.crtc, kms.connector, fb, w, h)
                    .map_err(|e| err("DRM_IOCTL_MODE_SETCRTC", e))
                    .and_then(|()| {
                        self.card
                            .dirty_fb(fb)
                            .map_err(|e| err("DRM_IOCTL_MODE_DIRTYFB", e))
                    });
                if let Err(e) = shown {
                    let _ = self.card.remove_fb(fb);
                    return Err(e);
                }
                if let Some(old) = kms.shown.replace(fb) {
                    self.card
                        .remove_fb(old)
                        .map_err(|e| err("DRM_IOCTL_MODE_RMFB", e))?;
                }
                self.kms = Some(kms);
                self.report.scanouts += 1;
            }
        }
        if self.wait_each {
            let t = Instant::now();
            let r = self.card.wait(handle);
            self.steps.wait += t.elapsed();
            r.map_err(|e| err("DRM_IOCTL_VIRTGPU_WAIT", e))?;
        } else {
            self.unwaited = Some((index, handle));
        }
        if self.cfg.device_digests {
            self.record_read(index, handle)?;
        }
        Ok(())
    }

    /// Puts the recorded device reads into the report (`--device-digests`),
    /// with the digest of each object's pattern over its rectangle. The
    /// digests are computed here, after the run, so that no measured phase
    /// times them (a pass over 4 MiB per object that anonymous memory does
    /// not have).
    fn report_reads(&mut self) {
        if self.cfg.device_digests {
            let mut reads: Vec<DeviceRead> = self.reads.iter().flatten().cloned().collect();
            for r in &mut reads {
                let rect = pattern::Rect {
                    x: r.x,
                    y: r.y,
                    w: r.w,
                    h: r.h,
                    stride: r.w * drm::BYTES_PER_PIXEL,
                };
                let digest = pattern::rect_digest(self.cfg.seed, r.object, rect);
                r.fnv1a64 = format!("{digest:016x}");
            }
            self.report.device_reads = Some(reads);
        }
    }

    /// Counts one device read of object `index`; the first one also looks
    /// up its resource id and records the rectangle every use makes the
    /// device read (the whole object); the digest is left to
    /// [`Self::report_reads`].
    fn record_read(&mut self, index: u64, handle: u32) -> Result<(), WorkloadError> {
        let slot = usize::try_from(index)
            .map_err(|_| WorkloadError::Config(format!("object index {index} too large")))?;
        if self.reads.len() <= slot {
            self.reads.resize(slot + 1, None);
        }
        if let Some(r) = self.reads[slot].as_mut() {
            r.reads += 1;
            return Ok(());
        }
        let resource_id =
            self.card
                .resource_id(handle)
                .map_err(|source| WorkloadError::ObjectIoctl {
                    op: "DRM_IOCTL_VIRTGPU_RESOURCE_INFO",
                    object: index,
                    source,
                })?;
        self.reads[slot] = Some(DeviceRead {
            object: index,
            resource_id,
            x: 0,
            y: 0,
            w: self.geo.width,
            h: self.geo.height,
            fnv1a64: String::new(),
            reads: 1,
        });
        Ok(())
    }

    /// Phase 2: allocate and touch `pressure_bytes` of anonymous memory, page
    /// by page, then release it.
    fn pressure(&mut self) -> Result<(), WorkloadError> {
        let bytes = self.cfg.pressure_bytes;
        if bytes == 0 {
            return Ok(());
        }
        let t = Instant::now();
        let r = touch_anonymous(bytes).map_err(|source| WorkloadError::Pressure { bytes, source });
        self.report.phases_ms.pressure = ms(t.elapsed());
        self.report.pressure_bytes = if r.is_ok() { bytes } else { 0 };
        eprintln!("vugpu-workload: pressure {} MiB done", bytes >> 20);
        r
    }

    /// Phase 3, repeated `--rounds` times: use every object again.
    /// Purgeable ones get WILLNEED first (purged ones are counted and never
    /// used again); every retained object is mapped, checked byte by byte,
    /// unmapped, and sent to the device again, which makes the guest
    /// re-attach backing it evicted. Later rounds find objects evicted again
    /// after a re-attach.
    fn reuse_and_verify(&mut self) -> Result<(), WorkloadError> {
        let t = Instant::now();
        let total = u64::try_from(self.objects.len()).unwrap_or(u64::MAX);
        for round in 1..=self.cfg.rounds {
            for (index, slot) in (0u64..).zip(0..self.objects.len()) {
                let mut obj = self.objects[slot];
                let r = self.reuse_one(index, round, &mut obj);
                self.objects[slot] = obj;
                self.report.phases_ms.reuse_verify = ms(t.elapsed());
                r?;
                progress(&format!("reuse+verify round {round}"), index + 1, total);
            }
            self.report.rounds_done = round;
        }
        Ok(())
    }

    fn reuse_one(&mut self, index: u64, round: u64, obj: &mut Object) -> Result<(), WorkloadError> {
        let err = |op, source| WorkloadError::ObjectIoctl {
            op,
            object: index,
            source,
        };
        if obj.purged {
            return Ok(());
        }
        if obj.dontneed {
            let retained = self
                .card
                .madvise(obj.handle, drm::VIRTGPU_MADV_WILLNEED)
                .map_err(|e| err("DRM_IOCTL_VIRTGPU_MADVISE(WILLNEED)", e))?;
            obj.dontneed = false;
            if !retained {
                obj.purged = true;
                self.report.madvise.purged += 1;
                return Ok(());
            }
            self.report.madvise.retained += 1;
        }
        let t = Instant::now();
        let offset = self
            .card
            .map_offset(obj.handle)
            .map_err(|e| err("DRM_IOCTL_VIRTGPU_MAP", e))?;
        let mut map = self
            .card
            .mmap(offset, self.geo.len)
            .map_err(|e| err("mmap", e))?;
        self.steps.map += t.elapsed();
        let t = Instant::now();
        let v = pattern::verify(map.words_mut(), self.cfg.seed, index);
        self.steps.cpu += t.elapsed();
        let t = Instant::now();
        drop(map);
        self.steps.unmap += t.elapsed();
        self.report.verified_bytes += v.checked_bytes;
        if v.mismatched_bytes > 0 {
            self.report.mismatched_objects += 1;
            self.report.mismatched_bytes += v.mismatched_bytes;
            let (found, expected) = v.first_word.unwrap_or_default();
            self.report.add_failure(format!(
                "round {round} object {index}: {} bytes differ, first at offsets {:?} (word found {found:#018x}, expected {expected:#018x})",
                v.mismatched_bytes, v.first_offsets
            ));
        }
        self.send_to_device(index, obj.handle)
    }
}

/// A private anonymous mapping, unmapped on drop.
struct AnonMap {
    ptr: std::ptr::NonNull<libc::c_void>,
    len: usize,
}

impl AnonMap {
    fn new(bytes: u64) -> io::Result<Self> {
        let len =
            usize::try_from(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
        // SAFETY: fresh private anonymous mapping chosen by the kernel;
        // checked for MAP_FAILED below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        std::ptr::NonNull::new(ptr)
            .map(|ptr| Self { ptr, len })
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))
    }

    /// The mapping as 64-bit words (the length truncated to a multiple of 8).
    fn words_mut(&mut self) -> &mut [u64] {
        // SAFETY: `ptr` is a page-aligned live mapping of `len` readable and
        // writable bytes owned by `self`; the exclusive borrow of `self`
        // prevents aliasing slices.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().cast::<u64>(), self.len / 8) }
    }
}

impl Drop for AnonMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in `new`; no slice of
        // it outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr(), self.len) };
    }
}

/// The anonymous phases of `--swap-ratio`: `bytes` of anonymous memory
/// filled with the pattern (4 MiB chunks, like objects), then every chunk
/// read back and checked; pswpout over the fill and pswpin over the re-read.
fn anon_swap_phases(
    bytes: u64,
    seed: u64,
    shrinker_file: &Path,
) -> Result<SwapPhases, WorkloadError> {
    let mut map =
        AnonMap::new(bytes).map_err(|source| WorkloadError::Pressure { bytes, source })?;
    let words = map.words_mut();
    let chunk_words = ANON_CHUNK_BYTES / 8;
    let mark = SwapMark::now(shrinker_file);
    for (i, chunk) in (0u64..).zip(words.chunks_mut(chunk_words)) {
        pattern::fill(chunk, seed, ANON_OBJECT_BASE + i);
    }
    let (written_pages, write_secs) = mark.since("pswpout");
    let write_psi = mark.psi();
    let write_shrinker = mark.shrinker(shrinker_file);
    progress::set_phase("reuse");
    let mark = SwapMark::now(shrinker_file);
    let (mut bad_chunks, mut bad_bytes) = (0u64, 0u64);
    for (i, chunk) in (0u64..).zip(words.chunks(chunk_words)) {
        let v = pattern::verify(chunk, seed, ANON_OBJECT_BASE + i);
        if v.mismatched_bytes > 0 {
            bad_chunks += 1;
            bad_bytes += v.mismatched_bytes;
        }
    }
    let (read_pages, read_secs) = mark.since("pswpin");
    // All of either phase is the pattern loop.
    let phases = SwapPhases {
        written_pages,
        write_secs,
        read_pages,
        read_secs,
        write_psi,
        read_psi: mark.psi(),
        write_steps: Steps {
            cpu: write_secs,
            ..Default::default()
        },
        read_steps: Steps {
            cpu: read_secs,
            ..Default::default()
        },
        write_shrinker,
        read_shrinker: mark.shrinker(shrinker_file),
    };
    drop(map);
    if bad_bytes > 0 {
        return Err(WorkloadError::Mismatch {
            objects: bad_chunks,
            bytes: bad_bytes,
        });
    }
    Ok(phases)
}

/// Maps `bytes` of private anonymous memory, writes one byte per page, and
/// unmaps it.
fn touch_anonymous(bytes: u64) -> io::Result<()> {
    let len = usize::try_from(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
    // SAFETY: fresh private anonymous mapping chosen by the kernel; checked
    // for MAP_FAILED below.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let base = ptr.cast::<u8>();
    let mut off = 0usize;
    let mut page = 0u8;
    while off < len {
        // SAFETY: `off < len`, inside the mapping created above.
        unsafe { base.add(off).write_volatile(page) };
        page = page.wrapping_add(1);
        off += 4096;
    }
    // SAFETY: unmaps exactly the mapping created above; no references remain.
    unsafe { libc::munmap(ptr, len) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::args::Sizing;

    fn config(card: &str) -> Config {
        Config {
            kind: Kind::TwoD,
            sizing: Sizing::Count(2),
            object_bytes: 1 << 20,
            seed: 1,
            dontneed_every: 0,
            pressure_bytes: 0,
            settle: Duration::ZERO,
            progress: None,
            rounds: 1,
            inject_corruption: None,
            use_madvise: false,
            device_digests: false,
            swap_ratio: false,
            swap_ratio_wait_each: false,
            scenario: "unit".into(),
            smoke: false,
            card: PathBuf::from(card),
            shrinker_file: PathBuf::from("/nonexistent/shrinker"),
            kmsg: PathBuf::from("/nonexistent/kmsg"),
        }
    }

    #[test]
    fn test_run_missing_card_fails_with_error_text() {
        let cfg = config("/nonexistent/dri/card0");

        let r = run(&cfg);

        assert_eq!(r.result, "fail");
        let e = r.error.unwrap_or_default();
        assert!(
            e.starts_with("Cannot open DRM card /nonexistent/dri/card0"),
            "{e}"
        );
        assert!(r.shrinker.is_none());
        assert_eq!(r.objects_planned, 2);
        assert_eq!(r.objects, 0);
    }

    #[test]
    fn test_run_non_drm_file_fails_cleanly() {
        // /dev/null opens but is no DRM device: DRM_IOCTL_VERSION must fail
        // and be reported, not crash.
        let cfg = config("/dev/null");

        let r = run(&cfg);

        assert_eq!(r.result, "fail");
        let e = r.error.unwrap_or_default();
        assert!(e.starts_with("DRM_IOCTL_VERSION failed"), "{e}");
    }

    #[test]
    fn test_geometry_unaligned_size_is_rejected() {
        let g = Geometry::new(4096 + 8);

        assert!(matches!(g, Err(WorkloadError::Config(_))));
    }

    #[test]
    fn test_geometry_4mib_is_1024_by_1024() {
        let g = Geometry::new(4 << 20).unwrap();

        assert_eq!((g.width, g.height), (1024, 1024));
    }

    #[test]
    fn test_anon_swap_phases_small_region_reads_back_intact() {
        let r = anon_swap_phases(
            3 * ANON_CHUNK_BYTES as u64 / 2,
            7,
            Path::new("/nonexistent/shrinker"),
        );

        let p = r.unwrap();
        assert!(p.write_secs >= 0.0 && p.read_secs >= 0.0);
    }

    #[test]
    fn test_touch_anonymous_small_region_succeeds() {
        let r = touch_anonymous(64 * 1024);

        assert!(r.is_ok());
    }
}
