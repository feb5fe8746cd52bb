//! Errors of a workload run.

use std::io;
use std::path::PathBuf;

/// Why a run failed.
///
/// ## Errors
/// - [`WorkloadError::BlobUnsupported`]: `--kind blob` on a device without blobs.
/// - [`WorkloadError::Config`]: invalid command-line combination.
/// - [`WorkloadError::DeviceErrors`]: the driver logged error responses from the device.
/// - [`WorkloadError::DeviceIoctl`]: a device-level ioctl (version, getparam) failed.
/// - [`WorkloadError::KernelWarnings`]: the kernel logged WARNING/BUG reports.
/// - [`WorkloadError::MadviseProbe`]: probing MADVISE gave an unexpected errno.
/// - [`WorkloadError::MadviseUnsupported`]: the run needs MADVISE, the kernel lacks it.
/// - [`WorkloadError::Mismatch`]: object content differed after reuse.
/// - [`WorkloadError::ObjectIoctl`]: an ioctl or mmap on one object failed.
/// - [`WorkloadError::OpenCard`]: the card node could not be opened.
/// - [`WorkloadError::Pressure`]: the anonymous pressure allocation failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// The device answered commands with error responses.
    #[error("Device answered {count} commands with an error response (first: {first})")]
    DeviceErrors {
        /// Error responses logged by the driver.
        count: u64,
        /// The first logged line.
        first: String,
    },
    /// The device does not offer blob resources.
    #[error("Device does not offer blob resources (VIRTGPU_PARAM_RESOURCE_BLOB is 0)")]
    BlobUnsupported,
    /// Invalid configuration.
    #[error("Invalid configuration: {0}")]
    Config(String),
    /// A device-level ioctl failed.
    #[error("{op} failed")]
    DeviceIoctl {
        /// Ioctl name.
        op: &'static str,
        /// OS error.
        #[source]
        source: io::Error,
    },
    /// Probing MADVISE failed with an errno that means neither "present" nor
    /// "absent".
    #[error("Probing DRM_IOCTL_VIRTGPU_MADVISE failed")]
    MadviseProbe {
        /// OS error.
        #[source]
        source: io::Error,
    },
    /// The run needs MADVISE but the kernel does not have it.
    #[error(
        "Kernel has no DRM_IOCTL_VIRTGPU_MADVISE (unpatched kernel?); \
         rerun with --no-madvise or --dontneed-every 0"
    )]
    MadviseUnsupported,
    /// Content mismatches were found.
    #[error("Content mismatch: {bytes} bytes in {objects} objects")]
    Mismatch {
        /// Objects with at least one bad byte.
        objects: u64,
        /// Bad bytes in total.
        bytes: u64,
    },
    /// The kernel logged warnings or BUG reports during the run.
    #[error("Kernel logged {count} WARNING/BUG reports (first: {first})")]
    KernelWarnings {
        /// Reports logged.
        count: u64,
        /// The first one.
        first: String,
    },
    /// An ioctl or mmap on one object failed.
    #[error("{op} failed for object {object}")]
    ObjectIoctl {
        /// Operation name.
        op: &'static str,
        /// Object index.
        object: u64,
        /// OS error.
        #[source]
        source: io::Error,
    },
    /// The card node could not be opened.
    #[error("Cannot open DRM card {}", path.display())]
    OpenCard {
        /// Card path.
        path: PathBuf,
        /// OS error.
        #[source]
        source: io::Error,
    },
    /// The anonymous pressure allocation failed.
    #[error("Pressure allocation of {bytes} bytes failed")]
    Pressure {
        /// Requested bytes.
        bytes: u64,
        /// OS error.
        #[source]
        source: io::Error,
    },
}

/// Formats an error with its whole source chain: `outer: inner: ...`.
pub fn chain_to_string(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        s.push_str(": ");
        s.push_str(&e.to_string());
        cur = e.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_chain_to_string_includes_os_error() {
        let e = WorkloadError::ObjectIoctl {
            op: "RESOURCE_CREATE",
            object: 7,
            source: io::Error::from_raw_os_error(libc::ENOMEM),
        };

        let s = chain_to_string(&e);

        assert!(
            s.starts_with("RESOURCE_CREATE failed for object 7: "),
            "{s}"
        );
        assert!(s.contains("os error 12"), "{s}");
    }
}
