//! Wire-level types shared with the protocol crate.
//!
//! Temporary local definitions until `vugpu-protocol` exports them; the names
//! and values follow the interface contract so the switch is a one-line change.

/// Error response types of virtio-gpu (`VIRTIO_GPU_RESP_ERR_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ErrorCode {
    /// `VIRTIO_GPU_RESP_ERR_UNSPEC`.
    Unspec = 0x1200,
    /// `VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY`.
    OutOfMemory,
    /// `VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID`.
    InvalidScanoutId,
    /// `VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID`.
    InvalidResourceId,
    /// `VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID`.
    InvalidContextId,
    /// `VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER`.
    InvalidParameter,
}

/// `struct virtio_gpu_rect` in host byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rect {
    /// Left edge in pixels.
    pub x: u32,
    /// Top edge in pixels.
    pub y: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// `struct virtio_gpu_mem_entry` in host byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemEntry {
    /// Guest-physical address.
    pub addr: u64,
    /// Length in bytes.
    pub length: u32,
}

/// `VIRTIO_GPU_BLOB_MEM_GUEST`.
pub const VIRTIO_GPU_BLOB_MEM_GUEST: u32 = 1;

/// Bytes per pixel of a `VIRTIO_GPU_FORMAT_*` value, `None` if unknown.
pub fn format_bytes_per_pixel(format: u32) -> Option<u32> {
    match format {
        1 | 2 | 3 | 4 | 67 | 68 | 121 | 134 => Some(4),
        _ => None,
    }
}
