//! [`GpuState`]: the resource table, scanouts, cursor and backing state.

use std::collections::BTreeMap;
use std::sync::Arc;

use log::{debug, warn};
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};

use crate::backing::{Backing, BackingEntries, GuestRange, HostReader, ReadError, RegionMap};
use crate::copier::Copier;
use crate::error::ResourceError;
use crate::pixels::HostPixels;
use crate::proto::{format_bytes_per_pixel, MemEntry, Rect, VIRTIO_GPU_BLOB_MEM_GUEST};

/// Largest width or height of a resource, in pixels (as QEMU and crosvm).
pub const MAX_RESOURCE_DIMENSION: u32 = 16384;
/// Largest number of scanouts (`VIRTIO_GPU_MAX_SCANOUTS`).
pub const MAX_SCANOUTS: u32 = 16;
/// Cursor image width in pixels.
pub const CURSOR_WIDTH: u32 = 64;
/// Cursor image height in pixels.
pub const CURSOR_HEIGHT: u32 = 64;

/// Every virtio-gpu 2D format has four bytes per pixel.
const BYTES_PER_PIXEL: u32 = 4;
/// `VIRTIO_GPU_BLOB_FLAG_USE_{MAPPABLE,SHAREABLE,CROSS_DEVICE}`.
const KNOWN_BLOB_FLAGS: u32 = 0x7;
/// Range buffers of detached backings kept for the next attach, at most.
/// A guest re-attaching a large scattered backing (after swap-in) then
/// reuses a resident buffer instead of page-faulting a fresh one.
const RANGE_POOL_BUFFERS: usize = 4;
/// Smallest range buffer worth keeping (in ranges; 4 KiB). Smaller ones are
/// cheap to allocate.
const RANGE_POOL_MIN_CAPACITY: usize = 256;

/// Limits and display geometry of a [`GpuState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuStateConfig {
    /// Number of scanouts, 1 to [`MAX_SCANOUTS`].
    pub num_scanouts: u32,
    /// Upper bound of host memory for resource storage (sum over all 2D
    /// resources of `width * height * 4`), in bytes.
    pub max_host_memory: u64,
    /// Most entries one ATTACH_BACKING or CREATE_BLOB may carry (QEMU: 16384).
    pub max_backing_entries: u32,
    /// Preferred display width (validated; kept for the daemon).
    pub display_width: u32,
    /// Preferred display height (validated; kept for the daemon).
    pub display_height: u32,
}

/// What a resource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    /// A 2D resource with a host pixel copy.
    TwoD {
        /// `VIRTIO_GPU_FORMAT_*`.
        format: u32,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// A `VIRTIO_GPU_BLOB_MEM_GUEST` blob: content lives in guest memory only.
    GuestBlob {
        /// Size in bytes.
        size: u64,
        /// `VIRTIO_GPU_BLOB_FLAG_*`.
        flags: u32,
    },
}

/// A scanout the display should (re)draw, or disable when `resource_id` is 0.
///
/// The pixels are obtained with [`GpuState::read_pixels`]`(resource_id, src)`
/// and belong at `(dst_x, dst_y)` of a `width` x `height` scanout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanoutUpdate {
    /// Scanout index.
    pub scanout_id: u32,
    /// Resource shown, 0 if the scanout is disabled.
    pub resource_id: u32,
    /// Scanout width in pixels (0 if disabled).
    pub width: u32,
    /// Scanout height in pixels (0 if disabled).
    pub height: u32,
    /// `VIRTIO_GPU_FORMAT_*` of the pixels (0 if disabled).
    pub format: u32,
    /// Area of the resource to read, in resource coordinates.
    pub src: Rect,
    /// Left edge of that area on the scanout.
    pub dst_x: u32,
    /// Top edge of that area on the scanout.
    pub dst_y: u32,
}

/// A cursor image copied out of a resource by [`GpuState::update_cursor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorImage {
    /// Resource the image was copied from.
    pub resource_id: u32,
    /// Hot spot x.
    pub hot_x: u32,
    /// Hot spot y.
    pub hot_y: u32,
    /// Width in pixels ([`CURSOR_WIDTH`]).
    pub width: u32,
    /// Height in pixels ([`CURSOR_HEIGHT`]).
    pub height: u32,
    /// `VIRTIO_GPU_FORMAT_*` of the pixels.
    pub format: u32,
    /// `width * height * 4` bytes, rows tightly packed.
    pub pixels: Vec<u8>,
}

/// How a guest blob is laid out as an image (from SET_SCANOUT_BLOB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BlobLayout {
    format: u32,
    width: u32,
    height: u32,
    stride: u32,
    offset: u32,
}

/// Rows of a 2D resource's host copy ([`GpuState::host_rows`]).
#[derive(Debug, Clone, Copy)]
pub struct HostRows<'a> {
    /// The pixels, rows tightly packed.
    pub bytes: &'a [u8],
    /// The host copy is a mapping of its own, whose pages the process never
    /// reuses for other data: they may be handed to the kernel by reference
    /// (`vmsplice`); a page still queued when the resource goes keeps these
    /// pixels.
    pub own_mapping: bool,
}

/// One entry of the resource table.
#[derive(Debug)]
struct Resource {
    kind: ResourceKind,
    /// The host pixel copy of a 2D resource: `width * height * 4` bytes,
    /// rows `width * 4` apart (empty for a guest blob).
    pixels: HostPixels,
    /// `None` is the `NoBacking` state.
    backing: Option<Backing>,
    uuid: Option<[u8; 16]>,
    /// Latest image layout of a guest blob shown on a scanout.
    layout: Option<BlobLayout>,
}

impl Resource {
    /// Host bytes of this resource's pixel copy.
    fn host_bytes(&self) -> u64 {
        match self.kind {
            ResourceKind::TwoD { width, height, .. } => {
                u64::from(width) * u64::from(height) * u64::from(BYTES_PER_PIXEL)
            }
            ResourceKind::GuestBlob { .. } => 0,
        }
    }

    /// Guest bytes the backing must cover.
    fn required_backing(&self) -> u64 {
        match self.kind {
            ResourceKind::TwoD { .. } => self.host_bytes(),
            ResourceKind::GuestBlob { size, .. } => size,
        }
    }

    fn attached_bytes(&self) -> u64 {
        self.backing.as_ref().map_or(0, Backing::total)
    }
}

/// What a scanout shows.
#[derive(Debug, Clone, Copy)]
struct Scanout {
    resource_id: u32,
    /// Area of the resource (or blob image) shown.
    rect: Rect,
    format: u32,
}

/// Cursor bookkeeping. The cursor does not pin its resource: UPDATE_CURSOR
/// arrives on the cursor queue, unordered with RESOURCE_UNREF on the control
/// queue, so the image is copied out when the cursor is set.
#[derive(Debug, Clone, Copy, Default)]
struct Cursor {
    resource_id: u32,
    scanout_id: u32,
    x: u32,
    y: u32,
}

/// The device state: resources, their backing, scanouts and the cursor.
///
/// Holds host pointers into guest memory, so it is not `Send`: a
/// `GpuState` lives on one worker thread. Every method validates its
/// guest-controlled arguments completely before it changes any state.
///
/// Give it a clone of the `GuestMemoryAtomic` that vhost-user-backend
/// updates (the one passed to `VhostUserBackend::update_memory`): the
/// state notices a new memory table by comparing snapshots, re-derives its
/// host pointers in [`GpuState::refresh_memory`], and also does so by itself
/// before any access to guest memory.
pub struct GpuState {
    config: GpuStateConfig,
    mem: GuestMemoryAtomic<GuestMemoryMmap<()>>,
    /// The guest memory snapshot every backing was validated against.
    /// Holding the `Arc` keeps that mapping alive, so the host addresses in
    /// `regions` stay valid memory until [`GpuState::refresh_memory`]
    /// replaces both.
    mem_snapshot: Arc<GuestMemoryMmap<()>>,
    /// The regions of `mem_snapshot` with their host addresses: host
    /// pointers are derived from a backing's guest ranges through it, on
    /// demand, and never stored.
    regions: RegionMap,
    /// Recycled range buffers (see [`RANGE_POOL_BUFFERS`]).
    range_pool: Vec<Vec<GuestRange>>,
    /// Shares large TRANSFER_TO_HOST_2D copies with a helper thread.
    copier: Copier,
    resources: BTreeMap<u32, Resource>,
    scanouts: Vec<Option<Scanout>>,
    cursor: Cursor,
    host_memory_used: u64,
    attached_bytes: u64,
    uuids_assigned: u64,
    dropped_backings: u64,
}

impl std::fmt::Debug for GpuState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuState")
            .field("config", &self.config)
            .field("resources", &self.resources.len())
            .field("host_memory_used", &self.host_memory_used)
            .field("attached_bytes", &self.attached_bytes)
            .finish_non_exhaustive()
    }
}

/// True if `rect` lies inside a `width` x `height` area (overflow-safe).
fn rect_inside(rect: &Rect, width: u32, height: u32) -> bool {
    u64::from(rect.x) + u64::from(rect.width) <= u64::from(width)
        && u64::from(rect.y) + u64::from(rect.height) <= u64::from(height)
}

/// Intersection of two rectangles, `None` if empty.
fn intersect(a: &Rect, b: &Rect) -> Option<Rect> {
    let x0 = a.x.max(b.x);
    let y0 = a.y.max(b.y);
    let x1 = (u64::from(a.x) + u64::from(a.width)).min(u64::from(b.x) + u64::from(b.width));
    let y1 = (u64::from(a.y) + u64::from(a.height)).min(u64::from(b.y) + u64::from(b.height));
    if x1 <= u64::from(x0) || y1 <= u64::from(y0) {
        return None;
    }
    // Both differences are bounded by a u32 width/height.
    Some(Rect {
        x: x0,
        y: y0,
        width: u32::try_from(x1 - u64::from(x0)).ok()?,
        height: u32::try_from(y1 - u64::from(y0)).ok()?,
    })
}

/// Backing offset one past the last byte of a `rect` image read or write
/// whose first pixel is at `offset` and whose rows are `stride` apart:
/// `offset + (height - 1) * stride + width * 4`. `None` on overflow or for an
/// empty rectangle.
fn span_end(offset: u64, rect: &Rect, stride: u64) -> Option<u64> {
    let last_row = u64::from(rect.height).checked_sub(1)?;
    let row_bytes = u64::from(rect.width).checked_mul(u64::from(BYTES_PER_PIXEL))?;
    if row_bytes == 0 {
        return None;
    }
    offset
        .checked_add(last_row.checked_mul(stride)?)?
        .checked_add(row_bytes)
}

impl GpuState {
    /// Creates an empty state over `mem`.
    ///
    /// # Errors
    ///
    /// [`ResourceError::InvalidConfig`] for 0 or more than [`MAX_SCANOUTS`]
    /// scanouts, a zero display size or zero `max_backing_entries`.
    pub fn new(
        config: GpuStateConfig,
        mem: GuestMemoryAtomic<GuestMemoryMmap<()>>,
    ) -> Result<Self, ResourceError> {
        if config.num_scanouts == 0 || config.num_scanouts > MAX_SCANOUTS {
            return Err(ResourceError::InvalidConfig(
                "the number of scanouts must be 1 to 16",
            ));
        }
        if config.display_width == 0 || config.display_height == 0 {
            return Err(ResourceError::InvalidConfig(
                "the display size must not be 0",
            ));
        }
        if config.max_backing_entries == 0 {
            return Err(ResourceError::InvalidConfig(
                "max_backing_entries must not be 0",
            ));
        }
        let mem_snapshot = mem.memory().into_inner();
        let regions = RegionMap::new(&mem_snapshot);
        Ok(Self {
            config,
            mem,
            mem_snapshot,
            regions,
            range_pool: Vec::new(),
            copier: Copier::default(),
            resources: BTreeMap::new(),
            scanouts: vec![None; config.num_scanouts as usize],
            cursor: Cursor::default(),
            host_memory_used: 0,
            attached_bytes: 0,
            uuids_assigned: 0,
            dropped_backings: 0,
        })
    }

    /// The configuration this state was created with.
    pub fn config(&self) -> &GpuStateConfig {
        &self.config
    }

    fn resource(&self, id: u32) -> Result<&Resource, ResourceError> {
        self.resources
            .get(&id)
            .ok_or(ResourceError::UnknownResource { id })
    }

    fn check_scanout_id(&self, scanout_id: u32) -> Result<usize, ResourceError> {
        if scanout_id < self.config.num_scanouts {
            Ok(scanout_id as usize)
        } else {
            Err(ResourceError::InvalidScanoutId {
                scanout_id,
                num_scanouts: self.config.num_scanouts,
            })
        }
    }

    fn check_new_id(&self, id: u32) -> Result<(), ResourceError> {
        if id == 0 || self.resources.contains_key(&id) {
            Err(ResourceError::ResourceIdInUse { id })
        } else {
            Ok(())
        }
    }

    /// RESOURCE_CREATE_2D: creates resource `id` with host pixel storage of
    /// `width * height * 4` bytes and no backing.
    ///
    /// # Errors
    ///
    /// `id` 0 or in use: [`ResourceError::ResourceIdInUse`]; unknown format:
    /// [`ResourceError::InvalidFormat`]; a dimension 0 or above
    /// [`MAX_RESOURCE_DIMENSION`], or a size overflowing `u32`:
    /// [`ResourceError::InvalidDimensions`]; above `max_host_memory`:
    /// [`ResourceError::HostMemoryExhausted`].
    pub fn create_2d(
        &mut self,
        id: u32,
        format: u32,
        width: u32,
        height: u32,
    ) -> Result<(), ResourceError> {
        self.check_new_id(id)?;
        if format_bytes_per_pixel(format).is_none() {
            return Err(ResourceError::InvalidFormat { id, format });
        }
        let bad_dims = ResourceError::InvalidDimensions { id, width, height };
        if width == 0
            || height == 0
            || width > MAX_RESOURCE_DIMENSION
            || height > MAX_RESOURCE_DIMENSION
        {
            return Err(bad_dims);
        }
        let size = width
            .checked_mul(BYTES_PER_PIXEL)
            .and_then(|stride| stride.checked_mul(height))
            .ok_or(bad_dims)?;
        let needed = u64::from(size);
        let fits = self
            .host_memory_used
            .checked_add(needed)
            .is_some_and(|total| total <= self.config.max_host_memory);
        if !fits {
            return Err(ResourceError::HostMemoryExhausted {
                id,
                needed,
                used: self.host_memory_used,
                max: self.config.max_host_memory,
            });
        }

        // `size` fits u32, hence usize.
        let pixels = HostPixels::zeroed(size as usize)
            .ok_or(ResourceError::HostAllocationFailed { id, needed })?;
        self.resources.insert(
            id,
            Resource {
                kind: ResourceKind::TwoD {
                    format,
                    width,
                    height,
                },
                pixels,
                backing: None,
                uuid: None,
                layout: None,
            },
        );
        self.host_memory_used += needed;
        debug!("resources: created 2D resource {id} {width}x{height} format {format}");
        Ok(())
    }

    /// RESOURCE_CREATE_BLOB for `VIRTIO_GPU_BLOB_MEM_GUEST`: creates a guest
    /// blob of `size` bytes, attached to `entries` unless they are empty.
    ///
    /// Guest blobs have no host copy: they have no host storage and
    /// are read through vm-memory when shown. `blob_id` is only meaningful for
    /// host blobs and is ignored. Returns the bytes attached (0 without
    /// entries).
    ///
    /// # Errors
    ///
    /// `id` 0 or in use: [`ResourceError::ResourceIdInUse`]; another memory
    /// type: [`ResourceError::BlobMemUnsupported`]; unknown flags:
    /// [`ResourceError::BlobFlags`]; size 0: [`ResourceError::BlobSizeZero`];
    /// bad entries as in [`GpuState::attach_backing`].
    pub fn create_blob(
        &mut self,
        id: u32,
        blob_mem: u32,
        blob_flags: u32,
        blob_id: u64,
        size: u64,
        entries: &[MemEntry],
    ) -> Result<u64, ResourceError> {
        self.check_new_id(id)?;
        if blob_mem != VIRTIO_GPU_BLOB_MEM_GUEST {
            return Err(ResourceError::BlobMemUnsupported { id, blob_mem });
        }
        if blob_flags & !KNOWN_BLOB_FLAGS != 0 {
            return Err(ResourceError::BlobFlags {
                id,
                flags: blob_flags,
            });
        }
        if size == 0 {
            return Err(ResourceError::BlobSizeZero { id });
        }
        let mut resource = Resource {
            kind: ResourceKind::GuestBlob {
                size,
                flags: blob_flags,
            },
            pixels: HostPixels::empty(),
            backing: None,
            uuid: None,
            layout: None,
        };
        if !entries.is_empty() {
            self.ensure_memory_current();
            let required = resource.required_backing();
            resource.backing = Some(self.validated_backing(id, required, entries)?);
        }
        let attached = resource.attached_bytes();
        self.resources.insert(id, resource);
        self.attached_bytes += attached;
        debug!("resources: created guest blob {id} of {size} bytes (blob id {blob_id})");
        Ok(attached)
    }

    /// Validates `entries` as a backing of at least `required` bytes against
    /// the current memory snapshot, building it in a recycled buffer.
    fn validated_backing<E: BackingEntries + ?Sized>(
        &mut self,
        id: u32,
        required: u64,
        entries: &E,
    ) -> Result<Backing, ResourceError> {
        let buffer = self.range_pool.pop().unwrap_or_default();
        let backing = Backing::from_entries(
            id,
            entries,
            self.config.max_backing_entries,
            &self.regions,
            buffer,
        )?;
        if backing.total() < required {
            let total = backing.total();
            self.recycle_ranges(backing.into_ranges());
            return Err(ResourceError::BackingTooSmall {
                id,
                total,
                required,
            });
        }
        // A few ranges built in a big recycled buffer: keep an exact copy
        // and the buffer for the next large attach.
        if backing.capacity() >= RANGE_POOL_MIN_CAPACITY
            && backing.ranges().len().saturating_mul(4) < backing.capacity()
        {
            let exact = backing.exact_copy();
            self.recycle_ranges(backing.into_ranges());
            return Ok(exact);
        }
        Ok(backing)
    }

    /// Keeps the range buffer of a dropped backing for the next attach.
    fn recycle_ranges(&mut self, mut ranges: Vec<GuestRange>) {
        if ranges.capacity() >= RANGE_POOL_MIN_CAPACITY
            && self.range_pool.len() < RANGE_POOL_BUFFERS
        {
            ranges.clear();
            self.range_pool.push(ranges);
        }
    }

    /// RESOURCE_UNREF: destroys resource `id` and returns the bytes of backing
    /// it had attached (0 without backing).
    ///
    /// The resource leaves the table, and its host copy is freed.
    ///
    /// # Errors
    ///
    /// Unknown `id`: [`ResourceError::UnknownResource`]; still shown on a
    /// scanout: [`ResourceError::ResourceInUse`] (nothing changes).
    pub fn unref(&mut self, id: u32) -> Result<u64, ResourceError> {
        self.resource(id)?;
        if let Some(scanout_id) = self.scanout_showing(id) {
            warn!("resources: refusing to unref resource {id}: shown on scanout {scanout_id}");
            return Err(ResourceError::ResourceInUse { id, scanout_id });
        }
        let resource = self
            .resources
            .remove(&id)
            .ok_or(ResourceError::UnknownResource { id })?;
        let attached = resource.attached_bytes();
        self.attached_bytes -= attached;
        self.host_memory_used -= resource.host_bytes();
        if self.cursor.resource_id == id {
            self.cursor.resource_id = 0;
        }
        if let Some(backing) = resource.backing {
            self.recycle_ranges(backing.into_ranges());
        }
        debug!("resources: unref {id}, {attached} bytes of backing released");
        Ok(attached)
    }

    fn scanout_showing(&self, id: u32) -> Option<u32> {
        self.scanouts
            .iter()
            .position(|s| s.is_some_and(|s| s.resource_id == id))
            .and_then(|i| u32::try_from(i).ok())
    }

    /// RESOURCE_ATTACH_BACKING: attaches guest `entries` to resource `id` and
    /// returns the bytes attached.
    ///
    /// Adjacent entries are coalesced into one [`GuestRange`], validated
    /// against the current guest memory in the same pass. Large range
    /// buffers of detached backings are reused.
    ///
    /// # Errors
    ///
    /// Unknown `id`: [`ResourceError::UnknownResource`]; backing already
    /// attached: [`ResourceError::BackingAlreadyAttached`]; no entries or more
    /// than `max_backing_entries`: [`ResourceError::EntryCount`]; an entry of
    /// length 0, wrapping, or not guest memory:
    /// [`ResourceError::EntryEmpty`], [`ResourceError::EntryOverflow`],
    /// [`ResourceError::EntryOutsideGuestMemory`]; entries not covering the
    /// resource: [`ResourceError::BackingTooSmall`]. Nothing changes on error.
    pub fn attach_backing(&mut self, id: u32, entries: &[MemEntry]) -> Result<u64, ResourceError> {
        self.attach_backing_entries(id, entries)
    }

    /// RESOURCE_ATTACH_BACKING from entries in any [`BackingEntries`] form,
    /// e.g. the request's wire bytes viewed as `[virtio_gpu_mem_entry]`:
    /// validated, coalesced and mapped in one pass without an intermediate
    /// vector. Otherwise exactly [`GpuState::attach_backing`].
    ///
    /// # Errors
    ///
    /// As [`GpuState::attach_backing`].
    pub fn attach_backing_entries<E: BackingEntries + ?Sized>(
        &mut self,
        id: u32,
        entries: &E,
    ) -> Result<u64, ResourceError> {
        self.ensure_memory_current();
        let resource = self.resource(id)?;
        if resource.backing.is_some() {
            return Err(ResourceError::BackingAlreadyAttached { id });
        }
        let required = resource.required_backing();
        let backing = self.validated_backing(id, required, entries)?;
        let total = backing.total();
        let ranges = backing.ranges().len();
        if let Some(resource) = self.resources.get_mut(&id) {
            resource.backing = Some(backing);
        }
        self.attached_bytes += total;
        debug!("resources: attached {total} bytes in {ranges} ranges to resource {id}");
        Ok(total)
    }

    /// RESOURCE_DETACH_BACKING: drops every host reference to the backing of
    /// resource `id` and returns the bytes detached.
    ///
    /// When this returns, the state holds no record of those pages (host
    /// addresses are never stored) and no later operation reads or writes
    /// them until the next attach. A 2D resource keeps its host pixel copy.
    ///
    /// # Errors
    ///
    /// Unknown `id`: [`ResourceError::UnknownResource`]; no backing:
    /// [`ResourceError::BackingNotAttached`] (`ERR_UNSPEC`, not a refused
    /// access).
    pub fn detach_backing(&mut self, id: u32) -> Result<u64, ResourceError> {
        let resource = self.resource(id)?;
        if resource.backing.is_none() {
            return Err(ResourceError::BackingNotAttached { id });
        }
        // The ranges are the only record of the backing: no host pointer
        // into it is kept anywhere (they are derived per access).
        let backing = self.resources.get_mut(&id).and_then(|r| r.backing.take());
        let detached = backing.as_ref().map_or(0, Backing::total);
        self.attached_bytes -= detached;
        if let Some(backing) = backing {
            self.recycle_ranges(backing.into_ranges());
        }
        debug!("resources: detached {detached} bytes from resource {id}");
        Ok(detached)
    }

    /// Re-derives host pointers after the guest memory table changed.
    ///
    /// Cheap when nothing changed (one pointer comparison): returns
    /// `Ok(false)`. Otherwise host addresses are taken from the new memory
    /// from now on (none of the old snapshot is kept), and every resource
    /// whose ranges are no longer guest memory loses its backing (logged and
    /// counted in [`GpuState::dropped_backings_total`]); returns `Ok(true)`.
    ///
    /// Called by the daemon at the top of every queue pass, and by every
    /// operation here that touches guest memory.
    ///
    /// # Errors
    ///
    /// None today; the `Result` is kept for callers written against the
    /// renderer-backed version.
    pub fn refresh_memory(&mut self) -> Result<bool, ResourceError> {
        let current = self.mem.memory().into_inner();
        if Arc::ptr_eq(&current, &self.mem_snapshot) {
            return Ok(false);
        }
        self.mem_snapshot = current;
        self.regions = RegionMap::new(&self.mem_snapshot);
        for (&id, resource) in self.resources.iter_mut() {
            let Some(backing) = resource.backing.as_ref() else {
                continue;
            };
            if !backing.is_inside(&self.regions) {
                let dropped = backing.total();
                warn!(
                    "resources: memory update: dropping the {dropped} bytes of backing of \
                     resource {id}, no longer guest memory"
                );
                resource.backing = None;
                self.attached_bytes -= dropped;
                self.dropped_backings += 1;
            }
        }
        Ok(true)
    }

    /// Makes sure host addresses come from the current guest memory before
    /// an operation that touches guest memory, even if the daemon did not
    /// call [`GpuState::refresh_memory`] after an update.
    fn ensure_memory_current(&mut self) {
        if let Err(err) = self.refresh_memory() {
            warn!("resources: memory update: {err}");
        }
    }

    /// TRANSFER_TO_HOST_2D: copies `rect` of resource `id` from its backing
    /// into the host copy.
    ///
    /// Offsets follow QEMU and the Linux driver: the rect's first pixel is at
    /// byte `offset` of the backing and rows are `width * 4` apart, so the
    /// source is `[offset, offset + (h - 1) * stride + w * 4)`. `offset` must
    /// be at least `y * stride + x * 4` (what Linux sends; lower offsets are
    /// refused as rutabaga_gfx refused them). Full-width rects are copied in
    /// one block.
    ///
    /// For a guest blob this is a no-op once the blob has backing (its
    /// content already is guest memory), as in QEMU.
    ///
    /// # Errors
    ///
    /// Unknown `id`: [`ResourceError::UnknownResource`]; `rect` not inside
    /// the resource: [`ResourceError::RectOutOfBounds`]; no backing:
    /// [`ResourceError::NoBacking`]; source outside the backing:
    /// [`ResourceError::OutsideBacking`] (these two are refused accesses and
    /// touch no guest memory); an offset below the rect position:
    /// [`ResourceError::TransferOffset`].
    pub fn transfer_to_host_2d(
        &mut self,
        id: u32,
        rect: Rect,
        offset: u64,
    ) -> Result<(), ResourceError> {
        const OP: &str = "transfer to host";
        self.ensure_memory_current();
        let resource = self.resource(id)?;
        let ResourceKind::TwoD { width, height, .. } = resource.kind else {
            if resource.backing.is_none() {
                return Err(ResourceError::NoBacking { id, op: OP });
            }
            return Ok(());
        };
        if !rect_inside(&rect, width, height) {
            return Err(ResourceError::RectOutOfBounds {
                id,
                rect,
                width,
                height,
            });
        }
        let backing = resource
            .backing
            .as_ref()
            .ok_or(ResourceError::NoBacking { id, op: OP })?;
        let stride = u64::from(width) * u64::from(BYTES_PER_PIXEL);
        let Some(end) = span_end(offset, &rect, stride) else {
            // Empty rectangle (or an offset so large it overflows).
            if rect.width == 0 || rect.height == 0 {
                return Ok(());
            }
            return Err(ResourceError::OutsideBacking {
                id,
                op: OP,
                needed: u64::MAX,
                available: backing.total(),
            });
        };
        // Bounded by 16384 * 65536 + 65536: no overflow.
        let position = u64::from(rect.y) * stride + u64::from(rect.x) * u64::from(BYTES_PER_PIXEL);
        if offset < position {
            return Err(ResourceError::TransferOffset {
                id,
                offset,
                position,
            });
        }
        if end > backing.total() {
            return Err(ResourceError::OutsideBacking {
                id,
                op: OP,
                needed: end,
                available: backing.total(),
            });
        }
        let available = backing.total();
        // The rect is inside a resource of at most 16384x16384 pixels: every
        // size and offset into the pixel copy below fits usize.
        let (pitch, row) = (
            stride as usize,
            rect.width as usize * BYTES_PER_PIXEL as usize,
        );
        let first = position as usize;
        let rows = rect.height as usize;
        let Some(Resource {
            backing: Some(backing),
            pixels,
            ..
        }) = self.resources.get_mut(&id)
        else {
            return Err(ResourceError::NoBacking { id, op: OP });
        };
        let copied = if rect.x == 0 && rect.width == width {
            // Full rows: source and destination are both one block, copied
            // on two threads when large.
            self.copier.read(
                backing,
                &self.regions,
                offset,
                &mut pixels[first..first + rows * pitch],
            )
        } else {
            let mut reader = HostReader::new(backing, &self.regions);
            (0..rows).try_for_each(|i| {
                let dst = first + i * pitch;
                reader.read_at(offset + (i * pitch) as u64, &mut pixels[dst..dst + row])
            })
        };
        copied.map_err(|err| read_error(id, OP, end, available, err))
    }

    /// SET_SCANOUT: shows `rect` of 2D resource `id` on scanout
    /// `scanout_id`, or disables the scanout when `id` is 0.
    ///
    /// A 2D resource needs no backing to be shown (its host copy is).
    ///
    /// # Errors
    ///
    /// [`ResourceError::InvalidScanoutId`], [`ResourceError::UnknownResource`],
    /// [`ResourceError::NotSupportedForKind`] for a blob,
    /// [`ResourceError::RectOutOfBounds`].
    pub fn set_scanout(
        &mut self,
        scanout_id: u32,
        id: u32,
        rect: Rect,
    ) -> Result<ScanoutUpdate, ResourceError> {
        let index = self.check_scanout_id(scanout_id)?;
        if id == 0 {
            self.scanouts[index] = None;
            return Ok(disabled_update(scanout_id));
        }
        let resource = self.resource(id)?;
        let ResourceKind::TwoD {
            format,
            width,
            height,
        } = resource.kind
        else {
            return Err(ResourceError::NotSupportedForKind {
                id,
                op: "set scanout",
            });
        };
        if !rect_inside(&rect, width, height) || rect.width == 0 || rect.height == 0 {
            return Err(ResourceError::RectOutOfBounds {
                id,
                rect,
                width,
                height,
            });
        }
        let scanout = Scanout {
            resource_id: id,
            rect,
            format,
        };
        self.scanouts[index] = Some(scanout);
        Ok(full_update(scanout_id, &scanout))
    }

    /// SET_SCANOUT_BLOB: shows `rect` of guest blob `id`, laid out as a
    /// `width` x `height` image of `format` with plane 0 at `offsets[0]`
    /// and rows `strides[0]` apart, on scanout `scanout_id`; `id` 0 disables.
    ///
    /// The blob needs backing only when pixels are read
    /// ([`GpuState::read_pixels`], [`GpuState::flush`]). The layout becomes
    /// the blob's image layout for [`GpuState::read_pixels`].
    ///
    /// # Errors
    ///
    /// [`ResourceError::InvalidScanoutId`], [`ResourceError::UnknownResource`],
    /// [`ResourceError::NotSupportedForKind`] for a 2D resource,
    /// [`ResourceError::InvalidFormat`], [`ResourceError::InvalidDimensions`],
    /// [`ResourceError::BlobLayout`] if the image does not fit the blob,
    /// [`ResourceError::RectOutOfBounds`].
    #[allow(clippy::too_many_arguments)]
    pub fn set_scanout_blob(
        &mut self,
        scanout_id: u32,
        id: u32,
        width: u32,
        height: u32,
        format: u32,
        strides: [u32; 4],
        offsets: [u32; 4],
        rect: Rect,
    ) -> Result<ScanoutUpdate, ResourceError> {
        let index = self.check_scanout_id(scanout_id)?;
        if id == 0 {
            self.scanouts[index] = None;
            return Ok(disabled_update(scanout_id));
        }
        let resource = self.resource(id)?;
        let ResourceKind::GuestBlob { size, .. } = resource.kind else {
            return Err(ResourceError::NotSupportedForKind {
                id,
                op: "set scanout blob",
            });
        };
        if format_bytes_per_pixel(format).is_none() {
            return Err(ResourceError::InvalidFormat { id, format });
        }
        if width == 0
            || height == 0
            || width > MAX_RESOURCE_DIMENSION
            || height > MAX_RESOURCE_DIMENSION
        {
            return Err(ResourceError::InvalidDimensions { id, width, height });
        }
        let layout = BlobLayout {
            format,
            width,
            height,
            stride: strides[0],
            offset: offsets[0],
        };
        if u64::from(layout.stride) < u64::from(width) * u64::from(BYTES_PER_PIXEL) {
            return Err(ResourceError::BlobLayout {
                id,
                reason: "stride is smaller than a row",
            });
        }
        let full = Rect {
            x: 0,
            y: 0,
            width,
            height,
        };
        let fits = span_end(u64::from(layout.offset), &full, u64::from(layout.stride))
            .is_some_and(|end| end <= size);
        if !fits {
            return Err(ResourceError::BlobLayout {
                id,
                reason: "the image extends past the end of the blob",
            });
        }
        if !rect_inside(&rect, width, height) || rect.width == 0 || rect.height == 0 {
            return Err(ResourceError::RectOutOfBounds {
                id,
                rect,
                width,
                height,
            });
        }
        if let Some(resource) = self.resources.get_mut(&id) {
            resource.layout = Some(layout);
        }
        let scanout = Scanout {
            resource_id: id,
            rect,
            format,
        };
        self.scanouts[index] = Some(scanout);
        Ok(full_update(scanout_id, &scanout))
    }

    /// RESOURCE_FLUSH: lists, for every scanout showing resource `id`, the
    /// part of `rect` it shows. Read the pixels with [`GpuState::read_pixels`].
    ///
    /// # Errors
    ///
    /// [`ResourceError::UnknownResource`]; [`ResourceError::RectOutOfBounds`]
    /// if `rect` is not inside the resource (or the blob's image);
    /// [`ResourceError::NoBacking`] (refused access) for a guest blob without
    /// backing that is shown on a scanout.
    pub fn flush(&mut self, id: u32, rect: Rect) -> Result<Vec<ScanoutUpdate>, ResourceError> {
        let resource = self.resource(id)?;
        let bounds = match (resource.kind, resource.layout) {
            (ResourceKind::TwoD { width, height, .. }, _) => Some((width, height)),
            (ResourceKind::GuestBlob { .. }, Some(layout)) => Some((layout.width, layout.height)),
            (ResourceKind::GuestBlob { .. }, None) => None,
        };
        if let Some((width, height)) = bounds {
            if !rect_inside(&rect, width, height) {
                return Err(ResourceError::RectOutOfBounds {
                    id,
                    rect,
                    width,
                    height,
                });
            }
        }
        let is_blob = matches!(resource.kind, ResourceKind::GuestBlob { .. });
        let mut updates = Vec::new();
        for (scanout_id, scanout) in self.scanouts.iter().enumerate() {
            let Some(scanout) = scanout.filter(|s| s.resource_id == id) else {
                continue;
            };
            if is_blob && resource.backing.is_none() {
                return Err(ResourceError::NoBacking { id, op: "flush" });
            }
            let Some(src) = intersect(&rect, &scanout.rect) else {
                continue;
            };
            updates.push(ScanoutUpdate {
                scanout_id: u32::try_from(scanout_id).unwrap_or(u32::MAX),
                resource_id: id,
                width: scanout.rect.width,
                height: scanout.rect.height,
                format: scanout.format,
                src,
                dst_x: src.x - scanout.rect.x,
                dst_y: src.y - scanout.rect.y,
            });
        }
        Ok(updates)
    }

    /// Copies the pixels of `rect` of resource `id` into `out` (cleared
    /// first), rows tightly packed, `rect.width * rect.height * 4` bytes.
    ///
    /// A 2D resource is read from its host copy (no guest access). A guest
    /// blob is read from guest memory through its backing, with the image
    /// layout of its latest SET_SCANOUT_BLOB.
    ///
    /// # Errors
    ///
    /// [`ResourceError::UnknownResource`]; [`ResourceError::RectOutOfBounds`];
    /// [`ResourceError::BlobLayout`] for a blob never shown;
    /// [`ResourceError::NoBacking`] / [`ResourceError::OutsideBacking`]
    /// (refused accesses) for a blob without (enough) backing.
    pub fn read_pixels(
        &mut self,
        id: u32,
        rect: Rect,
        out: &mut Vec<u8>,
    ) -> Result<(), ResourceError> {
        const OP: &str = "read pixels";
        out.clear();
        let resource = self.resource(id)?;
        let (width, height) = match (resource.kind, resource.layout) {
            (ResourceKind::TwoD { width, height, .. }, _) => (width, height),
            (ResourceKind::GuestBlob { .. }, Some(layout)) => (layout.width, layout.height),
            (ResourceKind::GuestBlob { .. }, None) => {
                return Err(ResourceError::BlobLayout {
                    id,
                    reason: "the blob was never set as a scanout",
                })
            }
        };
        if !rect_inside(&rect, width, height) {
            return Err(ResourceError::RectOutOfBounds {
                id,
                rect,
                width,
                height,
            });
        }
        if rect.width == 0 || rect.height == 0 {
            return Ok(());
        }
        match resource.layout {
            Some(layout) => {
                self.ensure_memory_current();
                self.read_blob(id, layout, rect, out, OP)
            }
            None => self.read_host_copy(id, rect, out),
        }
    }

    /// The pixels of `rect` of 2D resource `id` straight from its host copy,
    /// without copying, when they are one contiguous block: `rect` spans
    /// the resource's full width (rows are then tightly packed,
    /// `rect.width * rect.height * 4` bytes). `None` for a narrower rect, a
    /// rect outside the resource, an empty rect, a guest blob or an unknown
    /// id: use [`GpuState::read_pixels`] then.
    ///
    /// Lets the display send a band with one copy (into the socket) instead
    /// of two, or with none ([`HostRows::own_mapping`]).
    pub fn host_rows(&self, id: u32, rect: Rect) -> Option<HostRows<'_>> {
        let resource = self.resources.get(&id)?;
        let ResourceKind::TwoD { width, height, .. } = resource.kind else {
            return None;
        };
        if rect.x != 0
            || rect.width != width
            || rect.height == 0
            || !rect_inside(&rect, width, height)
        {
            return None;
        }
        // Inside a resource of at most 16384x16384 pixels: fits usize.
        let pitch = width as usize * BYTES_PER_PIXEL as usize;
        let first = rect.y as usize * pitch;
        let bytes = resource
            .pixels
            .get(first..first + rect.height as usize * pitch)?;
        Some(HostRows {
            bytes,
            own_mapping: resource.pixels.is_mapped(),
        })
    }

    /// Appends `rect` of 2D resource `id`'s host copy to `out` (empty on
    /// entry): one copy per row, or one copy in all for full-width rows, and
    /// no zero-fill of `out` first.
    fn read_host_copy(&self, id: u32, rect: Rect, out: &mut Vec<u8>) -> Result<(), ResourceError> {
        let resource = self.resource(id)?;
        let ResourceKind::TwoD { width, .. } = resource.kind else {
            return Err(ResourceError::NotSupportedForKind {
                id,
                op: "read the host copy of",
            });
        };
        // Rect is inside a resource of at most 16384x16384: these fit usize.
        let bpp = BYTES_PER_PIXEL as usize;
        let pitch = width as usize * bpp;
        let row = rect.width as usize * bpp;
        let rows = rect.height as usize;
        let first = rect.y as usize * pitch + rect.x as usize * bpp;
        let pixels = &resource.pixels[..];
        out.reserve(row * rows);
        if row == pitch {
            out.extend_from_slice(&pixels[first..first + rows * pitch]);
        } else {
            for i in 0..rows {
                let start = first + i * pitch;
                out.extend_from_slice(&pixels[start..start + row]);
            }
        }
        Ok(())
    }

    /// Reads `rect` of the image `layout` from guest blob `id`'s backing.
    fn read_blob(
        &self,
        id: u32,
        layout: BlobLayout,
        rect: Rect,
        out: &mut Vec<u8>,
        op: &'static str,
    ) -> Result<(), ResourceError> {
        let resource = self.resource(id)?;
        let backing = resource
            .backing
            .as_ref()
            .ok_or(ResourceError::NoBacking { id, op })?;
        let stride = u64::from(layout.stride);
        let first = u64::from(layout.offset)
            + u64::from(rect.y) * stride
            + u64::from(rect.x) * u64::from(BYTES_PER_PIXEL);
        let end = span_end(first, &rect, stride).unwrap_or(u64::MAX);
        if end > backing.total() {
            return Err(ResourceError::OutsideBacking {
                id,
                op,
                needed: end,
                available: backing.total(),
            });
        }
        let row = rect.width as usize * BYTES_PER_PIXEL as usize;
        out.resize(row * rect.height as usize, 0);
        let mut reader = backing.reader(&self.mem_snapshot);
        let mut offset = first;
        for chunk in out.chunks_exact_mut(row) {
            reader
                .read_at(offset, chunk)
                .map_err(|err| read_error(id, op, end, backing.total(), err))?;
            offset += stride;
        }
        Ok(())
    }

    /// UPDATE_CURSOR: copies the 64x64 image of resource `id` with hot spot
    /// (`hot_x`, `hot_y`); `id` 0 hides the cursor and returns `None`.
    ///
    /// A 2D cursor must be exactly 64x64 and is read from its host copy; a
    /// guest blob must hold at least 64 * 64 * 4 bytes (rows 256 bytes apart
    /// from offset 0) and is read through its backing. The cursor does not
    /// keep a reference to the resource.
    ///
    /// # Errors
    ///
    /// [`ResourceError::UnknownResource`]; [`ResourceError::CursorResource`]
    /// for a wrong size; [`ResourceError::NoBacking`] (refused access) for a
    /// blob without backing.
    pub fn update_cursor(
        &mut self,
        id: u32,
        hot_x: u32,
        hot_y: u32,
    ) -> Result<Option<CursorImage>, ResourceError> {
        if id == 0 {
            self.cursor.resource_id = 0;
            return Ok(None);
        }
        let resource = self.resource(id)?;
        let full = Rect {
            x: 0,
            y: 0,
            width: CURSOR_WIDTH,
            height: CURSOR_HEIGHT,
        };
        let mut pixels = Vec::new();
        let format = match resource.kind {
            ResourceKind::TwoD {
                format,
                width,
                height,
            } => {
                if width != CURSOR_WIDTH || height != CURSOR_HEIGHT {
                    return Err(ResourceError::CursorResource {
                        id,
                        reason: "a 2D cursor must be 64x64",
                    });
                }
                self.read_host_copy(id, full, &mut pixels)?;
                format
            }
            ResourceKind::GuestBlob { size, .. } => {
                let layout = BlobLayout {
                    // Linux uses DRM_FORMAT_ARGB8888 for cursors.
                    format: 1,
                    width: CURSOR_WIDTH,
                    height: CURSOR_HEIGHT,
                    stride: CURSOR_WIDTH * BYTES_PER_PIXEL,
                    offset: 0,
                };
                if size < u64::from(CURSOR_WIDTH * CURSOR_HEIGHT * BYTES_PER_PIXEL) {
                    return Err(ResourceError::CursorResource {
                        id,
                        reason: "a blob cursor must hold 64x64 pixels",
                    });
                }
                self.ensure_memory_current();
                self.read_blob(id, layout, full, &mut pixels, "update cursor")?;
                layout.format
            }
        };
        self.cursor.resource_id = id;
        Ok(Some(CursorImage {
            resource_id: id,
            hot_x,
            hot_y,
            width: CURSOR_WIDTH,
            height: CURSOR_HEIGHT,
            format,
            pixels,
        }))
    }

    /// MOVE_CURSOR (and the position part of UPDATE_CURSOR): records the
    /// cursor position on scanout `scanout_id`.
    ///
    /// # Errors
    ///
    /// [`ResourceError::InvalidScanoutId`].
    pub fn move_cursor(&mut self, scanout_id: u32, x: u32, y: u32) -> Result<(), ResourceError> {
        self.check_scanout_id(scanout_id)?;
        self.cursor.scanout_id = scanout_id;
        self.cursor.x = x;
        self.cursor.y = y;
        Ok(())
    }

    /// The cursor: (resource id or 0, scanout id, x, y).
    pub fn cursor_state(&self) -> (u32, u32, u32, u32) {
        let c = &self.cursor;
        (c.resource_id, c.scanout_id, c.x, c.y)
    }

    /// RESOURCE_ASSIGN_UUID: the UUID of resource `id`, assigned on first
    /// call and stable afterwards. UUIDs are unique for the life of this
    /// state (a counter, never reused) and carry the RFC 9562 version 8 and
    /// variant bits.
    ///
    /// # Errors
    ///
    /// [`ResourceError::UnknownResource`].
    pub fn assign_uuid(&mut self, id: u32) -> Result<[u8; 16], ResourceError> {
        let next = self.uuids_assigned + 1;
        let resource = self
            .resources
            .get_mut(&id)
            .ok_or(ResourceError::UnknownResource { id })?;
        if let Some(uuid) = resource.uuid {
            return Ok(uuid);
        }
        let mut uuid = [0u8; 16];
        uuid[..4].copy_from_slice(&id.to_be_bytes());
        uuid[4..6].copy_from_slice(b"vg");
        uuid[6] = 0x80; // version 8
        uuid[8] = 0x80; // variant 0b10
        uuid[10..].copy_from_slice(&next.to_be_bytes()[2..]);
        resource.uuid = Some(uuid);
        self.uuids_assigned = next;
        Ok(uuid)
    }

    /// Device reset: drops every resource, scanout and the cursor, and takes
    /// host addresses from the current guest memory from now on.
    ///
    /// # Errors
    ///
    /// None today; the `Result` is kept for callers written against the
    /// renderer-backed version.
    pub fn reset(&mut self) -> Result<(), ResourceError> {
        self.resources.clear();
        self.scanouts.iter_mut().for_each(|s| *s = None);
        self.cursor = Cursor::default();
        self.host_memory_used = 0;
        self.attached_bytes = 0;
        self.mem_snapshot = self.mem.memory().into_inner();
        self.regions = RegionMap::new(&self.mem_snapshot);
        Ok(())
    }

    /// Number of live resources.
    pub fn resource_count(&self) -> usize {
        self.resources.len()
    }

    /// Guest bytes currently attached as backing, over all resources.
    pub fn attached_bytes(&self) -> u64 {
        self.attached_bytes
    }

    /// Host bytes of resource storage in use (2D pixel copies).
    pub fn host_memory_used(&self) -> u64 {
        self.host_memory_used
    }

    /// Backings dropped because a memory table update removed their pages.
    pub fn dropped_backings_total(&self) -> u64 {
        self.dropped_backings
    }

    /// True if resource `id` exists and has backing.
    pub fn has_backing(&self, id: u32) -> bool {
        self.resources.get(&id).is_some_and(|r| r.backing.is_some())
    }

    /// The coalesced backing ranges of resource `id`, `None` if it does not
    /// exist or has no backing.
    pub fn backing_ranges(&self, id: u32) -> Option<&[GuestRange]> {
        self.resources
            .get(&id)
            .and_then(|r| r.backing.as_ref())
            .map(Backing::ranges)
    }

    /// What resource `id` is, `None` if it does not exist.
    pub fn resource_kind(&self, id: u32) -> Option<ResourceKind> {
        self.resources.get(&id).map(|r| r.kind)
    }

    /// The resource shown on scanout `scanout_id`, `None` if disabled or out
    /// of range.
    pub fn scanout_resource(&self, scanout_id: u32) -> Option<u32> {
        self.scanouts
            .get(scanout_id as usize)
            .copied()
            .flatten()
            .map(|s| s.resource_id)
    }
}

impl ResourceKind {
    /// True for a guest blob.
    pub fn is_blob(&self) -> bool {
        matches!(self, Self::GuestBlob { .. })
    }
}

/// The error of a failed read of `[.., end)` from a backing of `available`
/// bytes.
fn read_error(
    id: u32,
    op: &'static str,
    end: u64,
    available: u64,
    err: ReadError,
) -> ResourceError {
    match err {
        ReadError::OutsideBacking | ReadError::NotGuestMemory => ResourceError::OutsideBacking {
            id,
            op,
            needed: end,
            available,
        },
        ReadError::Memory(source) => ResourceError::GuestMemory { id, source },
    }
}

fn disabled_update(scanout_id: u32) -> ScanoutUpdate {
    ScanoutUpdate {
        scanout_id,
        resource_id: 0,
        width: 0,
        height: 0,
        format: 0,
        src: Rect::default(),
        dst_x: 0,
        dst_y: 0,
    }
}

fn full_update(scanout_id: u32, scanout: &Scanout) -> ScanoutUpdate {
    ScanoutUpdate {
        scanout_id,
        resource_id: scanout.resource_id,
        width: scanout.rect.width,
        height: scanout.rect.height,
        format: scanout.format,
        src: scanout.rect,
        dst_x: 0,
        dst_y: 0,
    }
}

#[cfg(test)]
mod tests;
