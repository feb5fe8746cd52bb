//! Resource, scanout, cursor and backing state of the vhost-user virtio-gpu
//! device.
//!
//! This crate is the state tracker that never sees a queue: the daemon decodes
//! a command, converts its little-endian fields and calls one method of
//! [`GpuState`]. Everything a guest controls is validated here before any
//! state changes or any pointer reaches the renderer.
//!
//! # Backing lifecycle
//!
//! Every resource moves through `NoBacking -> Attached(ranges) -> NoBacking ->
//! Attached(ranges')` for as long as it lives:
//!
//! * [`GpuState::attach_backing`] validates every guest entry against guest
//!   memory, coalesces adjacent entries into [`GuestRange`]s (the source of
//!   truth); nothing else is kept: host addresses are derived from the
//!   ranges for each access.
//! * [`GpuState::detach_backing`] drops the ranges before it returns, so no
//!   later operation can reach those pages; the host pixel copy of a 2D
//!   resource stays.
//! * Any operation that would touch guest pages of a resource without backing
//!   fails with an error for which [`ResourceError::is_refused_access`] is true
//!   and touches no guest memory.
//! * [`GpuState::refresh_memory`] re-derives every host pointer after the
//!   guest memory table changed, and drops the backing of resources whose
//!   ranges are no longer guest memory.
//!
//! # Example
//!
//! ```
//! use vm_memory::{GuestAddress, GuestMemoryAtomic, GuestMemoryMmap};
//! use vugpu_resources::{GpuState, GpuStateConfig, MemEntry, Rect};
//!
//! let mem = GuestMemoryAtomic::new(
//!     GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap(),
//! );
//! let config = GpuStateConfig {
//!     num_scanouts: 1,
//!     max_host_memory: 1 << 30,
//!     max_backing_entries: 16384,
//!     display_width: 1280,
//!     display_height: 800,
//! };
//! let mut state = GpuState::new(config, mem).unwrap();
//! let rect = Rect { x: 0, y: 0, width: 32, height: 32 };
//! // 32x32 pixels of B8G8R8A8 = 4096 bytes = one page of guest memory.
//! state.create_2d(1, 1, 32, 32).unwrap();
//! let page = [MemEntry { addr: 0x1000, length: 4096 }];
//! assert_eq!(state.attach_backing(1, &page).unwrap(), 4096);
//! state.transfer_to_host_2d(1, rect, 0).unwrap();
//! assert_eq!(state.detach_backing(1).unwrap(), 4096);
//! // Without backing, guest memory is off limits ...
//! let err = state.transfer_to_host_2d(1, rect, 0).unwrap_err();
//! assert!(err.is_refused_access());
//! // ... but the host copy stays readable.
//! let mut pixels = Vec::new();
//! state.read_pixels(1, rect, &mut pixels).unwrap();
//! assert_eq!(pixels.len(), 4096);
//! ```
//!
//! # Storage
//!
//! 2D resources keep their pixels in a host copy owned by the state
//! (`width * height * 4` bytes, zeroed lazily by the kernel). TRANSFER_TO_HOST_2D
//! copies into it from guest memory through a map of the guest memory
//! regions (one copy per row, or one in all for full-width rows), and
//! [`GpuState::read_pixels`] copies out of it without a scratch buffer. This
//! is what rutabaga_gfx's 2D component did, without its per-resource iovec
//! vector and per-row copies, which made a scattered ATTACH and a full
//! frame slower than QEMU's C daemon. Guest blobs (`VIRTIO_GPU_BLOB_MEM_GUEST`)
//! have no host copy: their content lives in guest memory, so they hold only
//! guest ranges and are read through vm-memory's bounds-checked accessors.
//!
//! # Behaviour worth knowing
//!
//! * TRANSFER_TO_HOST_2D offsets follow QEMU and the Linux driver: `offset`
//!   is where the rectangle's first pixel sits in the backing. Offsets below
//!   `y * stride + x * 4` (which Linux never sends, and which rutabaga_gfx
//!   cannot express) are rejected with INVALID_PARAMETER.
//! * TRANSFER_TO_HOST_2D on a guest blob is a no-op (as in QEMU; Linux sends
//!   it for blob dumb buffers) but still refused without backing.
//! * The cursor copies its image at UPDATE_CURSOR and does not pin the
//!   resource: the cursor queue is not ordered with RESOURCE_UNREF on the
//!   control queue. A resource shown on a scanout cannot be unref'd.

mod backing;
mod copier;
mod error;
mod pixels;
mod proto;
mod state;

pub use backing::{BackingEntries, GuestRange};
pub use error::ResourceError;
pub use proto::{ErrorCode, MemEntry, Rect};
pub use state::{
    CursorImage, GpuState, GpuStateConfig, HostRows, ResourceKind, ScanoutUpdate, CURSOR_HEIGHT,
    CURSOR_WIDTH, MAX_RESOURCE_DIMENSION, MAX_SCANOUTS,
};
