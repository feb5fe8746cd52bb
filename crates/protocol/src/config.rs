//! The device configuration space (`struct virtio_gpu_config`) as seen
//! through vhost-user `GET_CONFIG` / `SET_CONFIG`, which address it by
//! byte offset and length.

use std::mem::size_of;

use zerocopy::IntoBytes;

use crate::wire::{virtio_gpu_config, VIRTIO_GPU_MAX_SCANOUTS};

/// Byte range of `events_clear`, the only driver-writable field.
const EVENTS_CLEAR: std::ops::Range<usize> = 4..8;

impl virtio_gpu_config {
    /// A configuration with no pending events. `num_scanouts` is clamped to
    /// `1..=VIRTIO_GPU_MAX_SCANOUTS`.
    pub fn new(num_scanouts: u32, num_capsets: u32) -> Self {
        let max = VIRTIO_GPU_MAX_SCANOUTS as u32;
        virtio_gpu_config {
            events_read: 0.into(),
            events_clear: 0.into(),
            num_scanouts: num_scanouts.clamp(1, max).into(),
            num_capsets: num_capsets.into(),
        }
    }

    /// The `len` bytes at `offset` of the 16-byte config space, or `None`
    /// if the range is not entirely inside it (including on overflow).
    pub fn read_range(&self, offset: u32, len: u32) -> Option<&[u8]> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        self.as_bytes().get(start..end)
    }

    /// Applies a driver write of `data` at `offset`. Only `events_clear`
    /// (bytes 4..8) is writable: each bit set there clears the same bit of
    /// `events_read`, and `events_clear` itself reads back as 0. Returns
    /// false, changing nothing, for a write that is empty, overflows, or
    /// touches any other byte.
    pub fn write_range(&mut self, offset: u32, data: &[u8]) -> bool {
        let Ok(start) = usize::try_from(offset) else {
            return false;
        };
        let Some(end) = start.checked_add(data.len()) else {
            return false;
        };
        if data.is_empty() || start < EVENTS_CLEAR.start || end > EVENTS_CLEAR.end {
            return false;
        }
        let mut clear = [0u8; 4];
        clear[start - EVENTS_CLEAR.start..end - EVENTS_CLEAR.start].copy_from_slice(data);
        let clear = u32::from_le_bytes(clear);
        self.events_read = (self.events_read.get() & !clear).into();
        self.events_clear = 0.into();
        true
    }

    /// Size of the configuration space in bytes (16).
    pub const fn size() -> usize {
        size_of::<virtio_gpu_config>()
    }
}
