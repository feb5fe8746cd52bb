//! Wire-level types this crate shares with the protocol crate.

pub use vugpu_protocol::wire::{format_bytes_per_pixel, VIRTIO_GPU_BLOB_MEM_GUEST};
pub use vugpu_protocol::{ErrorCode, MemEntry, Rect};
