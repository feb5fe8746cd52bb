//! Errors of the resource state tracker.

use rutabaga_gfx::RutabagaError;
use thiserror::Error;
use vm_memory::GuestMemoryError;

use crate::proto::{ErrorCode, Rect};

/// Why a [`GpuState`](crate::GpuState) operation failed.
///
/// Every variant maps to one virtio-gpu error response through
/// [`ResourceError::error_code`]; host detail (renderer errors, exact sizes)
/// stays in the message for logs. Variants are sorted by name.
///
/// ## Errors
///
/// Guest-induced: everything except [`ResourceError::InvalidConfig`],
/// [`ResourceError::Renderer`] and [`ResourceError::RendererInit`].
#[derive(Debug, Error)]
pub enum ResourceError {
    /// The resource already has backing attached.
    #[error("resource {id} already has backing attached")]
    BackingAlreadyAttached {
        /// Resource id.
        id: u32,
    },
    /// DETACH_BACKING of a resource that has no backing. Not a refused access:
    /// nothing would have touched guest memory.
    #[error("resource {id} has no backing to detach")]
    BackingNotAttached {
        /// Resource id.
        id: u32,
    },
    /// The backing entries do not cover the bytes the resource needs.
    #[error("backing of {total} bytes does not cover the {required} bytes resource {id} needs")]
    BackingTooSmall {
        /// Resource id.
        id: u32,
        /// Sum of the entry lengths.
        total: u64,
        /// Bytes the resource needs.
        required: u64,
    },
    /// The blob resource was created with unknown flag bits.
    #[error("blob flags {flags:#x} of resource {id} have unknown bits")]
    BlobFlags {
        /// Resource id.
        id: u32,
        /// Flags as sent by the guest.
        flags: u32,
    },
    /// A blob scanout layout does not fit the blob.
    #[error("scanout layout of blob resource {id} is invalid: {reason}")]
    BlobLayout {
        /// Resource id.
        id: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Only `VIRTIO_GPU_BLOB_MEM_GUEST` blobs are supported.
    #[error("blob memory type {blob_mem} of resource {id} is not supported")]
    BlobMemUnsupported {
        /// Resource id.
        id: u32,
        /// Blob memory type as sent by the guest.
        blob_mem: u32,
    },
    /// A blob resource must have a non-zero size.
    #[error("blob resource {id} has size 0")]
    BlobSizeZero {
        /// Resource id.
        id: u32,
    },
    /// The cursor resource is not a 64x64 image.
    #[error("resource {id} cannot be a cursor: {reason}")]
    CursorResource {
        /// Resource id.
        id: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A backing entry has zero length.
    #[error("backing entry {index} of resource {id} has zero length")]
    EntryEmpty {
        /// Resource id.
        id: u32,
        /// Index of the entry.
        index: usize,
    },
    /// A backing entry does not lie inside guest memory.
    #[error("backing entry {index} of resource {id} ({addr:#x}, {len} bytes) is not guest memory")]
    EntryOutsideGuestMemory {
        /// Resource id.
        id: u32,
        /// Index of the entry.
        index: usize,
        /// Guest-physical start.
        addr: u64,
        /// Length in bytes.
        len: u64,
    },
    /// A backing entry wraps around the end of the address space.
    #[error("backing entry {index} of resource {id} ({addr:#x}, {len} bytes) overflows")]
    EntryOverflow {
        /// Resource id.
        id: u32,
        /// Index of the entry.
        index: usize,
        /// Guest-physical start.
        addr: u64,
        /// Length in bytes.
        len: u64,
    },
    /// Zero entries, or more than the configured maximum.
    #[error("{count} backing entries for resource {id}, allowed 1 to {max}")]
    EntryCount {
        /// Resource id.
        id: u32,
        /// Entries the guest sent.
        count: usize,
        /// Configured maximum.
        max: u32,
    },
    /// Reading guest memory failed although the range was validated.
    #[error("reading guest memory of resource {id} failed")]
    GuestMemory {
        /// Resource id.
        id: u32,
        /// The vm-memory error.
        #[source]
        source: GuestMemoryError,
    },
    /// Creating the resource would exceed the host memory limit.
    #[error("resource {id} needs {needed} bytes of host memory, {used} of {max} in use")]
    HostMemoryExhausted {
        /// Resource id.
        id: u32,
        /// Bytes the resource needs.
        needed: u64,
        /// Bytes in use by other resources.
        used: u64,
        /// Configured limit.
        max: u64,
    },
    /// The host could not allocate the resource's pixel copy.
    #[error("resource {id}: the host could not allocate {needed} bytes for its pixels")]
    HostAllocationFailed {
        /// Resource id.
        id: u32,
        /// Bytes the resource needs.
        needed: u64,
    },
    /// The configuration is not usable.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// Width or height is 0, too large, or the size overflows.
    #[error("resource {id} has invalid dimensions {width}x{height}")]
    InvalidDimensions {
        /// Resource id.
        id: u32,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// The pixel format is not a known `VIRTIO_GPU_FORMAT_*`.
    #[error("resource {id} has unknown format {format}")]
    InvalidFormat {
        /// Resource id.
        id: u32,
        /// Format as sent by the guest.
        format: u32,
    },
    /// The scanout id is not below the number of scanouts.
    #[error("scanout {scanout_id} does not exist ({num_scanouts} scanouts)")]
    InvalidScanoutId {
        /// Scanout id as sent by the guest.
        scanout_id: u32,
        /// Configured number of scanouts.
        num_scanouts: u32,
    },
    /// The operation needs guest pages but the resource has no backing.
    #[error("{op} on resource {id} refused: it has no backing")]
    NoBacking {
        /// Resource id.
        id: u32,
        /// The refused operation.
        op: &'static str,
    },
    /// The operation works only on one kind of resource.
    #[error("{op} on resource {id} refused: wrong resource kind")]
    NotSupportedForKind {
        /// Resource id.
        id: u32,
        /// The refused operation.
        op: &'static str,
    },
    /// The operation would access guest bytes past the end of the backing.
    #[error("{op} on resource {id} refused: needs {needed} bytes of backing, has {available}")]
    OutsideBacking {
        /// Resource id.
        id: u32,
        /// The refused operation.
        op: &'static str,
        /// End offset the access would reach.
        needed: u64,
        /// Bytes of backing attached.
        available: u64,
    },
    /// A rectangle is not inside the resource (or scanout layout).
    #[error("rectangle {rect:?} is not inside the {width}x{height} area of resource {id}")]
    RectOutOfBounds {
        /// Resource id.
        id: u32,
        /// The rectangle as sent by the guest.
        rect: Rect,
        /// Width of the area.
        width: u32,
        /// Height of the area.
        height: u32,
    },
    /// The renderer failed (not produced since the state keeps 2D pixels
    /// itself; kept for API stability).
    #[error("renderer failed to {op} resource {id}")]
    Renderer {
        /// Resource id.
        id: u32,
        /// The renderer operation.
        op: &'static str,
        /// The renderer's error.
        #[source]
        source: RutabagaError,
    },
    /// The renderer could not be created (not produced since the state keeps
    /// 2D pixels itself; kept for API stability).
    #[error("creating the 2D renderer failed")]
    RendererInit(#[source] RutabagaError),
    /// A TRANSFER_TO_HOST_2D offset below the position of the rectangle's
    /// first pixel (`y * stride + x * 4`), which the renderer cannot express.
    #[error(
        "transfer offset {offset} of resource {id} is below the rectangle position {position}"
    )]
    TransferOffset {
        /// Resource id.
        id: u32,
        /// Offset as sent by the guest.
        offset: u64,
        /// Byte position of the rectangle's first pixel.
        position: u64,
    },
    /// The resource id is 0 or already in use.
    #[error("resource id {id} is reserved or already in use")]
    ResourceIdInUse {
        /// Resource id.
        id: u32,
    },
    /// The resource is still shown on a scanout.
    #[error("resource {id} is still shown on scanout {scanout_id}")]
    ResourceInUse {
        /// Resource id.
        id: u32,
        /// Scanout showing it.
        scanout_id: u32,
    },
    /// No resource has this id.
    #[error("resource {id} does not exist")]
    UnknownResource {
        /// Resource id.
        id: u32,
    },
}

impl ResourceError {
    /// The virtio-gpu error response for this error.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::BackingAlreadyAttached { .. }
            | Self::BackingNotAttached { .. }
            | Self::GuestMemory { .. }
            | Self::InvalidConfig(_)
            | Self::NoBacking { .. }
            | Self::Renderer { .. }
            | Self::RendererInit(_)
            | Self::ResourceInUse { .. } => ErrorCode::Unspec,
            Self::HostMemoryExhausted { .. } | Self::HostAllocationFailed { .. } => {
                ErrorCode::OutOfMemory
            }
            Self::InvalidScanoutId { .. } => ErrorCode::InvalidScanoutId,
            Self::ResourceIdInUse { .. } | Self::UnknownResource { .. } => {
                ErrorCode::InvalidResourceId
            }
            Self::BackingTooSmall { .. }
            | Self::BlobFlags { .. }
            | Self::BlobLayout { .. }
            | Self::BlobMemUnsupported { .. }
            | Self::BlobSizeZero { .. }
            | Self::CursorResource { .. }
            | Self::EntryEmpty { .. }
            | Self::EntryOutsideGuestMemory { .. }
            | Self::EntryOverflow { .. }
            | Self::EntryCount { .. }
            | Self::InvalidDimensions { .. }
            | Self::InvalidFormat { .. }
            | Self::NotSupportedForKind { .. }
            | Self::OutsideBacking { .. }
            | Self::RectOutOfBounds { .. }
            | Self::TransferOffset { .. } => ErrorCode::InvalidParameter,
        }
    }

    /// True if the operation was refused because it would have accessed guest
    /// memory the resource does not own (no backing, or past its end). Such
    /// errors are counted in `vugpu_refused_guest_accesses_total`.
    pub fn is_refused_access(&self) -> bool {
        matches!(
            self,
            Self::NoBacking { .. } | Self::OutsideBacking { .. } | Self::GuestMemory { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_error_code_no_backing_is_unspec_and_refused() {
        let err = ResourceError::NoBacking {
            id: 1,
            op: "transfer",
        };

        assert_eq!(err.error_code(), ErrorCode::Unspec);
        assert!(err.is_refused_access());
    }

    #[test]
    fn test_error_code_outside_backing_is_invalid_parameter_and_refused() {
        let err = ResourceError::OutsideBacking {
            id: 1,
            op: "transfer",
            needed: 10,
            available: 5,
        };

        assert_eq!(err.error_code(), ErrorCode::InvalidParameter);
        assert!(err.is_refused_access());
    }

    #[test]
    fn test_error_code_detach_without_backing_is_unspec_and_not_refused() {
        let err = ResourceError::BackingNotAttached { id: 1 };

        assert_eq!(err.error_code(), ErrorCode::Unspec);
        assert!(!err.is_refused_access());
    }

    #[test]
    fn test_error_code_unknown_resource_is_not_refused_access() {
        let err = ResourceError::UnknownResource { id: 7 };

        assert_eq!(err.error_code(), ErrorCode::InvalidResourceId);
        assert!(!err.is_refused_access());
    }
}
