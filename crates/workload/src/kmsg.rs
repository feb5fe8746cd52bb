//! Watching the kernel log during a run.
//!
//! A 2D resource's host copy cannot be read back without virgl, so a device
//! that fails a command (out of memory, unknown resource after a lost
//! re-attach, ...) is only visible in the guest as the driver's
//! `*ERROR* response 0x.... (command 0x...)` line. Kernel `WARNING:`/`BUG:`
//! reports during the run are counted as well. Records are read from
//! `/dev/kmsg`, starting at its end when the run begins, so only messages
//! logged during the run count.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Marker of a virtio-gpu error response in the driver's log line.
pub const DEVICE_ERROR_MARKER: &str = "*ERROR* response 0x";
/// Maximum number of message texts kept per class.
pub const MAX_KEPT: usize = 4;
/// Upper bound on records read, so a log flood cannot keep the tool busy.
const MAX_RECORDS: usize = 1_000_000;

/// What the kernel logged during the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelLog {
    /// virtio-gpu error responses.
    pub device_errors: u64,
    /// `WARNING:` / `BUG:` reports.
    pub warnings: u64,
    /// First device error messages.
    pub device_error_lines: Vec<String>,
    /// First warning messages.
    pub warning_lines: Vec<String>,
    /// Records lost because the ring buffer wrapped (`EPIPE`).
    pub overruns: u64,
}

impl KernelLog {
    /// Classifies one log message (the text after the record header).
    pub fn add_message(&mut self, msg: &str) {
        if msg.contains(DEVICE_ERROR_MARKER) {
            self.device_errors += 1;
            if self.device_error_lines.len() < MAX_KEPT {
                self.device_error_lines.push(msg.to_string());
            }
        } else if msg.starts_with("WARNING:") || msg.contains("BUG:") {
            self.warnings += 1;
            if self.warning_lines.len() < MAX_KEPT {
                self.warning_lines.push(msg.to_string());
            }
        }
    }
}

/// The message of a `/dev/kmsg` record: `prio,seq,ts,flags;text\n` followed
/// by optional ` KEY=value` continuation lines.
pub fn record_message(record: &str) -> &str {
    let text = record.split_once(';').map_or(record, |(_, t)| t);
    text.split('\n').next().unwrap_or("")
}

/// A reader positioned at the end of the kernel log when the run started.
#[derive(Debug)]
pub struct KmsgWatch {
    file: File,
}

impl KmsgWatch {
    /// Opens `path` (normally `/dev/kmsg`) non-blocking and skips everything
    /// already logged.
    pub fn start(path: &Path) -> io::Result<Self> {
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?;
        file.seek(SeekFrom::End(0))?;
        Ok(Self { file })
    }

    /// Reads every record logged since [`KmsgWatch::start`] (or the previous
    /// call) and classifies it.
    pub fn collect(&mut self, log: &mut KernelLog) -> io::Result<()> {
        // One record per read(); the kernel limits a record to about 1 KiB of
        // text plus dictionary, 8 KiB is ample.
        let mut buf = vec![0u8; 8192];
        for _ in 0..MAX_RECORDS {
            match self.file.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    let record = String::from_utf8_lossy(&buf[..n]);
                    log.add_message(record_message(&record));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => log.overruns += 1,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_record_message_strips_header_and_dictionary() {
        let rec = "3,1234,6346073,-;[drm:virtio_gpu_dequeue_ctrl_func] *ERROR* response 0x1201 (command 0x101)\n SUBSYSTEM=drm\n";

        let msg = record_message(rec);

        assert_eq!(
            msg,
            "[drm:virtio_gpu_dequeue_ctrl_func] *ERROR* response 0x1201 (command 0x101)"
        );
    }

    #[test]
    fn test_add_message_device_error_is_counted() {
        let mut log = KernelLog::default();

        log.add_message(
            "[drm:virtio_gpu_dequeue_ctrl_func] *ERROR* response 0x1203 (command 0x105)",
        );

        assert_eq!(log.device_errors, 1);
        assert_eq!(log.warnings, 0);
        assert_eq!(log.device_error_lines.len(), 1);
    }

    #[test]
    fn test_add_message_warning_is_counted() {
        let mut log = KernelLog::default();

        log.add_message(
            "WARNING: CPU: 0 PID: 61 at drivers/gpu/drm/drm_gem_shmem_helper.c:300 foo+0x1/0x2",
        );

        assert_eq!(log.warnings, 1);
        assert_eq!(log.device_errors, 0);
    }

    #[test]
    fn test_add_message_ordinary_line_is_ignored() {
        let mut log = KernelLog::default();

        log.add_message("Adding 786428k swap on /dev/vda.  Priority:-2 extents:1");

        assert_eq!(log, KernelLog::default());
    }
}
