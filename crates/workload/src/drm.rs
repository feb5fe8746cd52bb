//! The slice of the DRM and virtio-gpu uapi the workload uses.
//!
//! The structs mirror `include/uapi/drm/drm.h` and `include/uapi/drm/virtgpu_drm.h`
//! of Linux 6.12 field by field (names kept so they can be grepped against the
//! headers), plus `drm_virtgpu_madvise`, which the guest shrinker series adds
//! (team contract: `DRM_VIRTGPU_MADVISE 0x0c`).
//!
//! Notes from `drivers/gpu/drm/virtio/virtgpu_ioctl.c` (6.12) that shape the
//! calls below:
//! - Without virgl, `RESOURCE_CREATE` requires `target == 2`, `depth <= 1`,
//!   `nr_samples <= 1`, `last_level <= 1`, `array_size <= 1`, ignores `bind` and
//!   `flags`, and takes the object size from `size` (0 means one page).
//! - Without virgl, `TRANSFER_TO_HOST` sends `TRANSFER_TO_HOST_2D` with the box
//!   `x/y/w/h` and `offset`, unfenced; it rejects guest blobs with `-EINVAL`.
//! - `GETPARAM` writes a C `int` to the user pointer passed in `value`.
//! - `WAIT` waits (up to 15 s) for the object's reservation fences; `-EBUSY`
//!   on timeout.
//! - An ioctl number beyond the driver's table fails with `-EINVAL` in
//!   `drm_ioctl()`, which is how an unpatched kernel answers `MADVISE`.

use std::ffi::{c_char, c_int, c_ulong, c_void};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;

/// `DRM_IOCTL_BASE`: the ioctl type byte of every DRM ioctl.
const DRM_IOCTL_BASE: u32 = b'd' as u32;
/// `DRM_COMMAND_BASE`: first driver-private ioctl number.
const DRM_COMMAND_BASE: u32 = 0x40;

const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

/// Encodes an ioctl request number like the kernel's `_IOC()` macro.
const fn ioc(dir: u32, nr: u32, size: usize) -> c_ulong {
    // Every struct here is far below the 14-bit size limit (checked in tests).
    let size = size as u32;
    ((dir << 30) | (size << 16) | (DRM_IOCTL_BASE << 8) | nr) as c_ulong
}

/// `DRM_IOWR(nr, T)`.
const fn drm_iowr<T>(nr: u32) -> c_ulong {
    ioc(IOC_READ | IOC_WRITE, nr, std::mem::size_of::<T>())
}

/// `DRM_IOW(nr, T)`.
const fn drm_iow<T>(nr: u32) -> c_ulong {
    ioc(IOC_WRITE, nr, std::mem::size_of::<T>())
}

/// `struct drm_version` (drm.h).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct drm_version {
    /// Major version.
    pub version_major: c_int,
    /// Minor version.
    pub version_minor: c_int,
    /// Patch level.
    pub version_patchlevel: c_int,
    /// Length of the name buffer.
    pub name_len: usize,
    /// Name of the driver (user buffer).
    pub name: *mut c_char,
    /// Length of the date buffer.
    pub date_len: usize,
    /// Date buffer.
    pub date: *mut c_char,
    /// Length of the description buffer.
    pub desc_len: usize,
    /// Description buffer.
    pub desc: *mut c_char,
}

/// `struct drm_gem_close` (drm.h).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Default)]
pub struct drm_gem_close {
    /// Handle of the object to be closed.
    pub handle: u32,
    /// Padding, must be zero.
    pub pad: u32,
}

/// `struct drm_virtgpu_map` (virtgpu_drm.h).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Default)]
pub struct drm_virtgpu_map {
    /// Out: fake offset to pass to `mmap()` on the card fd.
    pub offset: u64,
    /// GEM handle.
    pub handle: u32,
    /// Padding.
    pub pad: u32,
}

/// `struct drm_virtgpu_getparam` (virtgpu_drm.h).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Default)]
pub struct drm_virtgpu_getparam {
    /// `VIRTGPU_PARAM_*`.
    pub param: u64,
    /// User pointer to a C `int` the kernel writes the value to.
    pub value: u64,
}

/// `struct drm_virtgpu_resource_create` (virtgpu_drm.h).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Default)]
pub struct drm_virtgpu_resource_create {
    /// Gallium texture target (2 = `PIPE_TEXTURE_2D`; the only one without virgl).
    pub target: u32,
    /// `VIRTIO_GPU_FORMAT_*`.
    pub format: u32,
    /// `VIRGL_BIND_*` flags (ignored without virgl).
    pub bind: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Depth (must be <= 1 without virgl).
    pub depth: u32,
    /// Array size (must be <= 1 without virgl).
    pub array_size: u32,
    /// Last mip level (must be <= 1 without virgl).
    pub last_level: u32,
    /// Sample count (must be <= 1 without virgl).
    pub nr_samples: u32,
    /// Resource flags.
    pub flags: u32,
    /// Out: GEM handle.
    pub bo_handle: u32,
    /// Out: host resource id.
    pub res_handle: u32,
    /// Size of the backing object in bytes (0 = one page).
    pub size: u32,
    /// Stride (informational).
    pub stride: u32,
}

/// `struct drm_virtgpu_3d_box` (virtgpu_drm.h).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Default)]
pub struct drm_virtgpu_3d_box {
    /// X origin.
    pub x: u32,
    /// Y origin.
    pub y: u32,
    /// Z origin.
    pub z: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
    /// Depth.
    pub d: u32,
}

/// `struct drm_virtgpu_3d_transfer_to_host` (virtgpu_drm.h).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Default)]
pub struct drm_virtgpu_3d_transfer_to_host {
    /// GEM handle.
    pub bo_handle: u32,
    /// Region to transfer.
    pub r#box: drm_virtgpu_3d_box,
    /// Mip level.
    pub level: u32,
    /// Byte offset of the box origin in the backing.
    pub offset: u32,
    /// Stride (must be 0 for non-blob 3D objects).
    pub stride: u32,
    /// Layer stride.
    pub layer_stride: u32,
}

/// `struct drm_virtgpu_3d_wait` (virtgpu_drm.h).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Default)]
pub struct drm_virtgpu_3d_wait {
    /// GEM handle.
    pub handle: u32,
    /// `VIRTGPU_WAIT_*` flags.
    pub flags: u32,
}

/// `struct drm_virtgpu_resource_create_blob` (virtgpu_drm.h).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Default)]
pub struct drm_virtgpu_resource_create_blob {
    /// `VIRTGPU_BLOB_MEM_*`.
    pub blob_mem: u32,
    /// `VIRTGPU_BLOB_FLAG_USE_*`.
    pub blob_flags: u32,
    /// Out: GEM handle.
    pub bo_handle: u32,
    /// Out: host resource id.
    pub res_handle: u32,
    /// Size in bytes.
    pub size: u64,
    /// Padding.
    pub pad: u32,
    /// Size of the optional command buffer (0 for guest blobs).
    pub cmd_size: u32,
    /// User pointer to the command buffer.
    pub cmd: u64,
    /// Host blob id (0 for guest blobs).
    pub blob_id: u64,
}

/// `struct drm_virtgpu_madvise` (added by the guest shrinker series).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Default)]
pub struct drm_virtgpu_madvise {
    /// GEM handle.
    pub bo_handle: u32,
    /// Out: 1 if the object's pages were retained (not purged).
    pub retained: u32,
    /// In: `VIRTGPU_MADV_*`.
    pub madv: u32,
    /// Must be zero.
    pub pad: u32,
}

/// `struct drm_virtgpu_resource_info` (virtgpu_drm.h).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Default)]
pub struct drm_virtgpu_resource_info {
    /// GEM handle.
    pub bo_handle: u32,
    /// Out: host resource id.
    pub res_handle: u32,
    /// Out: object size.
    pub size: u32,
    /// Out: `VIRTGPU_BLOB_MEM_*` (0 for non-blob objects).
    pub blob_mem: u32,
}

/// `struct drm_mode_card_res` (drm_mode.h).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Default)]
pub struct drm_mode_card_res {
    /// User pointer to a `u32` array of framebuffer ids.
    pub fb_id_ptr: u64,
    /// User pointer to a `u32` array of CRTC ids.
    pub crtc_id_ptr: u64,
    /// User pointer to a `u32` array of connector ids.
    pub connector_id_ptr: u64,
    /// User pointer to a `u32` array of encoder ids.
    pub encoder_id_ptr: u64,
    /// In: array capacity; out: number of framebuffers.
    pub count_fbs: u32,
    /// In: array capacity; out: number of CRTCs.
    pub count_crtcs: u32,
    /// In: array capacity; out: number of connectors.
    pub count_connectors: u32,
    /// In: array capacity; out: number of encoders.
    pub count_encoders: u32,
    /// Smallest framebuffer width.
    pub min_width: u32,
    /// Largest framebuffer width.
    pub max_width: u32,
    /// Smallest framebuffer height.
    pub min_height: u32,
    /// Largest framebuffer height.
    pub max_height: u32,
}

/// `struct drm_mode_modeinfo` (drm_mode.h).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Default, Clone, Copy)]
pub struct drm_mode_modeinfo {
    /// Pixel clock in kHz.
    pub clock: u32,
    /// Visible width.
    pub hdisplay: u16,
    /// Horizontal sync start.
    pub hsync_start: u16,
    /// Horizontal sync end.
    pub hsync_end: u16,
    /// Total width.
    pub htotal: u16,
    /// Horizontal skew.
    pub hskew: u16,
    /// Visible height.
    pub vdisplay: u16,
    /// Vertical sync start.
    pub vsync_start: u16,
    /// Vertical sync end.
    pub vsync_end: u16,
    /// Total height.
    pub vtotal: u16,
    /// Vertical scan.
    pub vscan: u16,
    /// Refresh rate in Hz.
    pub vrefresh: u32,
    /// `DRM_MODE_FLAG_*`.
    pub flags: u32,
    /// `DRM_MODE_TYPE_*`.
    pub r#type: u32,
    /// Mode name.
    pub name: [u8; 32],
}

/// `struct drm_mode_crtc` (drm_mode.h).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Default)]
pub struct drm_mode_crtc {
    /// User pointer to a `u32` array of connector ids.
    pub set_connectors_ptr: u64,
    /// Number of connectors in that array.
    pub count_connectors: u32,
    /// CRTC id.
    pub crtc_id: u32,
    /// Framebuffer id.
    pub fb_id: u32,
    /// Scanout origin x in the framebuffer.
    pub x: u32,
    /// Scanout origin y in the framebuffer.
    pub y: u32,
    /// Gamma table size.
    pub gamma_size: u32,
    /// Whether `mode` is valid.
    pub mode_valid: u32,
    /// The mode.
    pub mode: drm_mode_modeinfo,
}

/// `struct drm_mode_fb_cmd2` (drm_mode.h).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Default)]
pub struct drm_mode_fb_cmd2 {
    /// Out: framebuffer id.
    pub fb_id: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// DRM fourcc.
    pub pixel_format: u32,
    /// `DRM_MODE_FB_*`.
    pub flags: u32,
    /// GEM handles per plane.
    pub handles: [u32; 4],
    /// Bytes per row per plane.
    pub pitches: [u32; 4],
    /// Offset of each plane.
    pub offsets: [u32; 4],
    /// Format modifiers.
    pub modifier: [u64; 4],
}

/// `struct drm_mode_fb_dirty_cmd` (drm_mode.h).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Default)]
pub struct drm_mode_fb_dirty_cmd {
    /// Framebuffer id.
    pub fb_id: u32,
    /// `DRM_MODE_FB_DIRTY_*`.
    pub flags: u32,
    /// Fill colour (with the fill flag).
    pub color: u32,
    /// Number of clip rectangles (0: the whole framebuffer).
    pub num_clips: u32,
    /// User pointer to the clip rectangles.
    pub clips_ptr: u64,
}

/// `DRM_IOCTL_VERSION`.
pub const DRM_IOCTL_VERSION: c_ulong = drm_iowr::<drm_version>(0x00);
/// `DRM_IOCTL_GEM_CLOSE`.
pub const DRM_IOCTL_GEM_CLOSE: c_ulong = drm_iow::<drm_gem_close>(0x09);
/// `DRM_IOCTL_VIRTGPU_MAP`.
pub const DRM_IOCTL_VIRTGPU_MAP: c_ulong = drm_iowr::<drm_virtgpu_map>(DRM_COMMAND_BASE + 0x01);
/// `DRM_IOCTL_VIRTGPU_GETPARAM`.
pub const DRM_IOCTL_VIRTGPU_GETPARAM: c_ulong =
    drm_iowr::<drm_virtgpu_getparam>(DRM_COMMAND_BASE + 0x03);
/// `DRM_IOCTL_VIRTGPU_RESOURCE_CREATE`.
pub const DRM_IOCTL_VIRTGPU_RESOURCE_CREATE: c_ulong =
    drm_iowr::<drm_virtgpu_resource_create>(DRM_COMMAND_BASE + 0x04);
/// `DRM_IOCTL_VIRTGPU_TRANSFER_TO_HOST`.
pub const DRM_IOCTL_VIRTGPU_TRANSFER_TO_HOST: c_ulong =
    drm_iowr::<drm_virtgpu_3d_transfer_to_host>(DRM_COMMAND_BASE + 0x07);
/// `DRM_IOCTL_VIRTGPU_WAIT`.
pub const DRM_IOCTL_VIRTGPU_WAIT: c_ulong =
    drm_iowr::<drm_virtgpu_3d_wait>(DRM_COMMAND_BASE + 0x08);
/// `DRM_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB`.
pub const DRM_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB: c_ulong =
    drm_iowr::<drm_virtgpu_resource_create_blob>(DRM_COMMAND_BASE + 0x0a);
/// `DRM_IOCTL_VIRTGPU_RESOURCE_INFO`.
pub const DRM_IOCTL_VIRTGPU_RESOURCE_INFO: c_ulong =
    drm_iowr::<drm_virtgpu_resource_info>(DRM_COMMAND_BASE + 0x05);
/// `DRM_IOCTL_MODE_GETRESOURCES`.
pub const DRM_IOCTL_MODE_GETRESOURCES: c_ulong = drm_iowr::<drm_mode_card_res>(0xa0);
/// `DRM_IOCTL_MODE_SETCRTC`.
pub const DRM_IOCTL_MODE_SETCRTC: c_ulong = drm_iowr::<drm_mode_crtc>(0xa2);
/// `DRM_IOCTL_MODE_RMFB`.
pub const DRM_IOCTL_MODE_RMFB: c_ulong = drm_iowr::<u32>(0xaf);
/// `DRM_IOCTL_MODE_DIRTYFB`.
pub const DRM_IOCTL_MODE_DIRTYFB: c_ulong = drm_iowr::<drm_mode_fb_dirty_cmd>(0xb1);
/// `DRM_IOCTL_MODE_ADDFB2`.
pub const DRM_IOCTL_MODE_ADDFB2: c_ulong = drm_iowr::<drm_mode_fb_cmd2>(0xb8);

/// `DRM_FORMAT_XRGB8888` (`XR24`), the host byte order virtio-gpu scans
/// out on little-endian guests.
pub const DRM_FORMAT_XRGB8888: u32 = u32::from_le_bytes(*b"XR24");
/// `DRM_MODE_TYPE_USERDEF`.
pub const DRM_MODE_TYPE_USERDEF: u32 = 1 << 5;

/// `DRM_IOCTL_VIRTGPU_MADVISE` (shrinker series).
pub const DRM_IOCTL_VIRTGPU_MADVISE: c_ulong =
    drm_iowr::<drm_virtgpu_madvise>(DRM_COMMAND_BASE + 0x0c);

/// `VIRTGPU_PARAM_3D_FEATURES`.
pub const VIRTGPU_PARAM_3D_FEATURES: u64 = 1;
/// `VIRTGPU_PARAM_RESOURCE_BLOB`.
pub const VIRTGPU_PARAM_RESOURCE_BLOB: u64 = 3;
/// `VIRTGPU_PARAM_HOST_VISIBLE`.
pub const VIRTGPU_PARAM_HOST_VISIBLE: u64 = 4;
/// `VIRTGPU_PARAM_CONTEXT_INIT`.
pub const VIRTGPU_PARAM_CONTEXT_INIT: u64 = 6;

/// `VIRTGPU_BLOB_MEM_GUEST`.
pub const VIRTGPU_BLOB_MEM_GUEST: u32 = 0x0001;
/// `VIRTGPU_BLOB_FLAG_USE_MAPPABLE`.
pub const VIRTGPU_BLOB_FLAG_USE_MAPPABLE: u32 = 0x0001;

/// `VIRTGPU_MADV_WILLNEED`.
pub const VIRTGPU_MADV_WILLNEED: u32 = 0;
/// `VIRTGPU_MADV_DONTNEED`.
pub const VIRTGPU_MADV_DONTNEED: u32 = 1;

/// `PIPE_TEXTURE_2D`: the only target the non-virgl path accepts.
pub const PIPE_TEXTURE_2D: u32 = 2;
/// `VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM`.
pub const VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM: u32 = 2;
/// `VIRGL_BIND_RENDER_TARGET` (ignored without virgl, set like Mesa does).
pub const VIRGL_BIND_RENDER_TARGET: u32 = 1 << 1;
/// Bytes per pixel of `B8G8R8X8`.
pub const BYTES_PER_PIXEL: u32 = 4;

/// Calls `ioctl(fd, request, arg)`, retrying on `EINTR`/`EAGAIN` like libdrm's
/// `drmIoctl()`.
///
/// # Safety
///
/// `T` must be the argument struct the kernel expects for `request`, and every
/// user pointer inside `arg` must be valid for the access the kernel makes.
unsafe fn drm_ioctl<T>(file: &File, request: c_ulong, arg: &mut T) -> io::Result<()> {
    loop {
        // SAFETY: the caller guarantees `arg` matches `request`; `arg` is a
        // live, exclusively borrowed struct for the duration of the call.
        let ret = unsafe { libc::ioctl(file.as_raw_fd(), request, arg as *mut T as *mut c_void) };
        if ret == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) | Some(libc::EAGAIN) => continue,
            _ => return Err(err),
        }
    }
}

/// Driver identity from `DRM_IOCTL_VERSION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverVersion {
    /// Driver name, e.g. `virtio_gpu`.
    pub name: String,
    /// `major.minor.patchlevel`.
    pub version: String,
}

/// An open DRM card node.
#[derive(Debug)]
pub struct Card {
    file: File,
}

impl Card {
    /// Opens a card node (e.g. `/dev/dri/card0`) read-write with `O_CLOEXEC`.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Self { file })
    }

    /// The card file's `/proc/self/fdinfo` text (DRM client memory stats:
    /// `drm-total-memory`, `drm-resident-memory`, ...).
    pub fn fdinfo(&self) -> io::Result<String> {
        std::fs::read_to_string(format!("/proc/self/fdinfo/{}", self.file.as_raw_fd()))
    }

    /// Queries the driver name and version.
    pub fn version(&self) -> io::Result<DriverVersion> {
        let mut name = [0u8; 64];
        let mut arg = drm_version {
            version_major: 0,
            version_minor: 0,
            version_patchlevel: 0,
            name_len: name.len(),
            name: name.as_mut_ptr().cast(),
            date_len: 0,
            date: std::ptr::null_mut(),
            desc_len: 0,
            desc: std::ptr::null_mut(),
        };
        // SAFETY: `arg` is a drm_version whose name buffer is `name`, valid for
        // `name_len` bytes; date and desc have length 0 so are never written.
        unsafe { drm_ioctl(&self.file, DRM_IOCTL_VERSION, &mut arg)? };
        // The kernel reports the full length but copies at most name_len bytes.
        let len = arg.name_len.min(name.len());
        let name = String::from_utf8_lossy(&name[..len])
            .trim_end_matches('\0')
            .to_string();
        Ok(DriverVersion {
            name,
            version: format!(
                "{}.{}.{}",
                arg.version_major, arg.version_minor, arg.version_patchlevel
            ),
        })
    }

    /// `DRM_IOCTL_VIRTGPU_GETPARAM`.
    pub fn getparam(&self, param: u64) -> io::Result<i32> {
        let mut value: c_int = 0;
        let mut arg = drm_virtgpu_getparam {
            param,
            value: &mut value as *mut c_int as u64,
        };
        // SAFETY: `arg.value` points at a live c_int, which is what the kernel
        // writes (sizeof(int)).
        unsafe { drm_ioctl(&self.file, DRM_IOCTL_VIRTGPU_GETPARAM, &mut arg)? };
        Ok(value)
    }

    /// Creates a 2D `B8G8R8X8` resource of `width` x `height` pixels, backed
    /// by a shmem object of `width * height * 4` bytes.
    /// Returns `(bo_handle, res_handle)`.
    pub fn resource_create_2d(&self, width: u32, height: u32) -> io::Result<(u32, u32)> {
        let size = width
            .checked_mul(height)
            .and_then(|p| p.checked_mul(BYTES_PER_PIXEL))
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
        let mut arg = drm_virtgpu_resource_create {
            target: PIPE_TEXTURE_2D,
            format: VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM,
            bind: VIRGL_BIND_RENDER_TARGET,
            width,
            height,
            depth: 1,
            array_size: 1,
            last_level: 0,
            nr_samples: 0,
            flags: 0,
            bo_handle: 0,
            res_handle: 0,
            size,
            stride: width * BYTES_PER_PIXEL,
        };
        // SAFETY: plain-data argument struct matching the request.
        unsafe { drm_ioctl(&self.file, DRM_IOCTL_VIRTGPU_RESOURCE_CREATE, &mut arg)? };
        Ok((arg.bo_handle, arg.res_handle))
    }

    /// Creates a mappable guest blob (`VIRTGPU_BLOB_MEM_GUEST`) of `size` bytes.
    /// Returns `(bo_handle, res_handle)`.
    pub fn resource_create_guest_blob(&self, size: u64) -> io::Result<(u32, u32)> {
        let mut arg = drm_virtgpu_resource_create_blob {
            blob_mem: VIRTGPU_BLOB_MEM_GUEST,
            blob_flags: VIRTGPU_BLOB_FLAG_USE_MAPPABLE,
            size,
            ..Default::default()
        };
        // SAFETY: plain-data argument struct matching the request; cmd_size is
        // 0 so `cmd` is never dereferenced.
        unsafe { drm_ioctl(&self.file, DRM_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB, &mut arg)? };
        Ok((arg.bo_handle, arg.res_handle))
    }

    /// `DRM_IOCTL_VIRTGPU_MAP`: the fake mmap offset of an object.
    pub fn map_offset(&self, handle: u32) -> io::Result<u64> {
        let mut arg = drm_virtgpu_map {
            handle,
            ..Default::default()
        };
        // SAFETY: plain-data argument struct matching the request.
        unsafe { drm_ioctl(&self.file, DRM_IOCTL_VIRTGPU_MAP, &mut arg)? };
        Ok(arg.offset)
    }

    /// Maps `len` bytes of an object at `offset` (from [`Card::map_offset`])
    /// shared and read-write.
    pub fn mmap(&self, offset: u64, len: usize) -> io::Result<Mapping> {
        let off = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
        // SAFETY: a fresh shared mapping chosen by the kernel (addr NULL); it
        // aliases no Rust object. The result is checked for MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.file.as_raw_fd(),
                off,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr).ok_or_else(|| io::Error::from_raw_os_error(libc::EFAULT))?;
        Ok(Mapping { ptr, len })
    }

    /// `DRM_IOCTL_VIRTGPU_TRANSFER_TO_HOST` of a whole `width` x `height` 2D
    /// resource (box at 0,0, offset 0).
    pub fn transfer_to_host_2d(&self, handle: u32, width: u32, height: u32) -> io::Result<()> {
        let mut arg = drm_virtgpu_3d_transfer_to_host {
            bo_handle: handle,
            r#box: drm_virtgpu_3d_box {
                x: 0,
                y: 0,
                z: 0,
                w: width,
                h: height,
                d: 1,
            },
            ..Default::default()
        };
        // SAFETY: plain-data argument struct matching the request.
        unsafe { drm_ioctl(&self.file, DRM_IOCTL_VIRTGPU_TRANSFER_TO_HOST, &mut arg) }
    }

    /// `DRM_IOCTL_VIRTGPU_WAIT` (blocking) for an object's fences.
    pub fn wait(&self, handle: u32) -> io::Result<()> {
        let mut arg = drm_virtgpu_3d_wait { handle, flags: 0 };
        // SAFETY: plain-data argument struct matching the request.
        unsafe { drm_ioctl(&self.file, DRM_IOCTL_VIRTGPU_WAIT, &mut arg) }
    }

    /// `DRM_IOCTL_VIRTGPU_MADVISE`; returns `retained`.
    pub fn madvise(&self, handle: u32, madv: u32) -> io::Result<bool> {
        let mut arg = drm_virtgpu_madvise {
            bo_handle: handle,
            madv,
            ..Default::default()
        };
        // SAFETY: plain-data argument struct matching the request (contract
        // layout); an unpatched kernel rejects the number without reading it.
        unsafe { drm_ioctl(&self.file, DRM_IOCTL_VIRTGPU_MADVISE, &mut arg)? };
        Ok(arg.retained != 0)
    }

    /// Probes for `DRM_IOCTL_VIRTGPU_MADVISE` without side effects: a WILLNEED
    /// on handle 0 (never a valid GEM handle) must fail with `ENOENT` on a
    /// kernel that has the ioctl, and fails with `EINVAL`/`ENOTTY` on one that
    /// does not. Returns `Ok(true)` / `Ok(false)`, or the unexpected error.
    pub fn probe_madvise(&self) -> io::Result<bool> {
        match self.madvise(0, VIRTGPU_MADV_WILLNEED) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOTTY)) => {
                Ok(false)
            }
            Err(e) => Err(e),
            // Handle 0 accepted: the ioctl exists even if it misbehaves here.
            Ok(_) => Ok(true),
        }
    }

    /// `DRM_IOCTL_VIRTGPU_RESOURCE_INFO`: the host resource id of an object.
    pub fn resource_id(&self, handle: u32) -> io::Result<u32> {
        let mut arg = drm_virtgpu_resource_info {
            bo_handle: handle,
            ..Default::default()
        };
        // SAFETY: plain-data argument struct matching the request.
        unsafe { drm_ioctl(&self.file, DRM_IOCTL_VIRTGPU_RESOURCE_INFO, &mut arg)? };
        Ok(arg.res_handle)
    }

    /// The first CRTC and the first connector of the card
    /// (`DRM_IOCTL_MODE_GETRESOURCES`).
    pub fn first_crtc_and_connector(&self) -> io::Result<(u32, u32)> {
        let mut crtcs = [0u32; 8];
        let mut connectors = [0u32; 8];
        let mut arg = drm_mode_card_res {
            crtc_id_ptr: crtcs.as_mut_ptr() as u64,
            connector_id_ptr: connectors.as_mut_ptr() as u64,
            count_crtcs: 8,
            count_connectors: 8,
            ..Default::default()
        };
        // SAFETY: the CRTC and connector pointers point at live arrays of 8
        // u32 each, and the counts say so; fb and encoder counts are 0, so
        // their null pointers are never written.
        unsafe { drm_ioctl(&self.file, DRM_IOCTL_MODE_GETRESOURCES, &mut arg)? };
        if arg.count_crtcs == 0 || arg.count_connectors == 0 {
            return Err(io::Error::from_raw_os_error(libc::ENODEV));
        }
        Ok((crtcs[0], connectors[0]))
    }

    /// `DRM_IOCTL_MODE_ADDFB2`: an XRGB8888 framebuffer of `width` x
    /// `height` pixels over the whole object `handle`; returns its id.
    pub fn add_fb(&self, handle: u32, width: u32, height: u32) -> io::Result<u32> {
        let mut arg = drm_mode_fb_cmd2 {
            width,
            height,
            pixel_format: DRM_FORMAT_XRGB8888,
            handles: [handle, 0, 0, 0],
            pitches: [width * BYTES_PER_PIXEL, 0, 0, 0],
            ..Default::default()
        };
        // SAFETY: plain-data argument struct matching the request.
        unsafe { drm_ioctl(&self.file, DRM_IOCTL_MODE_ADDFB2, &mut arg)? };
        Ok(arg.fb_id)
    }

    /// `DRM_IOCTL_MODE_RMFB` (disables the CRTC if it shows the framebuffer).
    pub fn remove_fb(&self, fb_id: u32) -> io::Result<()> {
        let mut arg = fb_id;
        // SAFETY: the request takes a u32 framebuffer id.
        unsafe { drm_ioctl(&self.file, DRM_IOCTL_MODE_RMFB, &mut arg) }
    }

    /// `DRM_IOCTL_MODE_SETCRTC`: shows framebuffer `fb_id` on `crtc` driving
    /// `connector`, with a user-defined `width` x `height` mode at 60 Hz.
    /// For a guest blob the driver sends SET_SCANOUT_BLOB and a
    /// RESOURCE_FLUSH, both of which make the device read the blob.
    pub fn set_crtc(
        &self,
        crtc: u32,
        connector: u32,
        fb_id: u32,
        width: u32,
        height: u32,
    ) -> io::Result<()> {
        let mut connectors = [connector];
        let mut arg = drm_mode_crtc {
            set_connectors_ptr: connectors.as_mut_ptr() as u64,
            count_connectors: 1,
            crtc_id: crtc,
            fb_id,
            mode_valid: 1,
            mode: user_mode(width, height)?,
            ..Default::default()
        };
        // SAFETY: `set_connectors_ptr` points at one live u32 as
        // `count_connectors` says; the rest is plain data.
        unsafe { drm_ioctl(&self.file, DRM_IOCTL_MODE_SETCRTC, &mut arg) }
    }

    /// `DRM_IOCTL_MODE_DIRTYFB` of the whole framebuffer: the driver sends
    /// RESOURCE_FLUSH.
    pub fn dirty_fb(&self, fb_id: u32) -> io::Result<()> {
        let mut arg = drm_mode_fb_dirty_cmd {
            fb_id,
            ..Default::default()
        };
        // SAFETY: plain-data argument struct; no clips, so `clips_ptr` is
        // never read.
        unsafe { drm_ioctl(&self.file, DRM_IOCTL_MODE_DIRTYFB, &mut arg) }
    }

    /// `DRM_IOCTL_GEM_CLOSE`.
    pub fn gem_close(&self, handle: u32) -> io::Result<()> {
        let mut arg = drm_gem_close { handle, pad: 0 };
        // SAFETY: plain-data argument struct matching the request.
        unsafe { drm_ioctl(&self.file, DRM_IOCTL_GEM_CLOSE, &mut arg) }
    }
}

/// A user-defined mode of `width` x `height` at 60 Hz with CVT-like
/// blanking (the driver accepts any mode; the device has no timings).
pub fn user_mode(width: u32, height: u32) -> io::Result<drm_mode_modeinfo> {
    let too_big = || io::Error::from_raw_os_error(libc::EOVERFLOW);
    let h = |v: u32| u16::try_from(v).map_err(|_| too_big());
    let htotal = width + 320;
    let vtotal = height + 38;
    let clock = u64::from(htotal) * u64::from(vtotal) * 60 / 1000;
    let mut name = [0u8; 32];
    let text = format!("{width}x{height}");
    let n = text.len().min(31);
    name[..n].copy_from_slice(&text.as_bytes()[..n]);
    Ok(drm_mode_modeinfo {
        clock: u32::try_from(clock).map_err(|_| too_big())?,
        hdisplay: h(width)?,
        hsync_start: h(width + 48)?,
        hsync_end: h(width + 160)?,
        htotal: h(htotal)?,
        hskew: 0,
        vdisplay: h(height)?,
        vsync_start: h(height + 3)?,
        vsync_end: h(height + 9)?,
        vtotal: h(vtotal)?,
        vscan: 0,
        vrefresh: 60,
        flags: 0,
        r#type: DRM_MODE_TYPE_USERDEF,
        name,
    })
}

/// A shared mapping of a GEM object, unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<c_void>,
    len: usize,
}

impl Mapping {
    /// The mapping as 64-bit words (the length is truncated to a multiple of 8).
    pub fn words_mut(&mut self) -> &mut [u64] {
        // SAFETY: `ptr` is a page-aligned (so u64-aligned) live mapping of
        // `len` readable and writable bytes owned by `self`; the exclusive
        // borrow of `self` prevents aliasing slices. Other processes could
        // write the shared object concurrently, but this tool is the only user
        // of its GEM objects.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().cast::<u64>(), self.len / 8) }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the mapping is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping created by `Card::mmap` that
        // nothing else references once `self` is dropped.
        unsafe {
            libc::munmap(self.ptr.as_ptr(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_struct_sizes_match_uapi_layout() {
        // Sizes from the 6.12 headers on x86_64 (LP64).
        assert_eq!(std::mem::size_of::<drm_version>(), 64);
        assert_eq!(std::mem::size_of::<drm_gem_close>(), 8);
        assert_eq!(std::mem::size_of::<drm_virtgpu_map>(), 16);
        assert_eq!(std::mem::size_of::<drm_virtgpu_getparam>(), 16);
        assert_eq!(std::mem::size_of::<drm_virtgpu_resource_create>(), 56);
        assert_eq!(std::mem::size_of::<drm_virtgpu_3d_transfer_to_host>(), 44);
        assert_eq!(std::mem::size_of::<drm_virtgpu_3d_wait>(), 8);
        assert_eq!(std::mem::size_of::<drm_virtgpu_resource_create_blob>(), 48);
        assert_eq!(std::mem::size_of::<drm_virtgpu_madvise>(), 16);
        assert_eq!(std::mem::size_of::<drm_virtgpu_resource_info>(), 16);
        assert_eq!(std::mem::size_of::<drm_mode_card_res>(), 64);
        assert_eq!(std::mem::size_of::<drm_mode_modeinfo>(), 68);
        assert_eq!(std::mem::size_of::<drm_mode_crtc>(), 104);
        assert_eq!(std::mem::size_of::<drm_mode_fb_cmd2>(), 104);
        assert_eq!(std::mem::size_of::<drm_mode_fb_dirty_cmd>(), 24);
    }

    #[test]
    fn test_ioctl_numbers_match_kernel_encoding() {
        // Values as printed by a C program including the 6.12 headers
        // (_IOWR('d', nr, T) = 0xc0000000 | size << 16 | 0x64 << 8 | nr).
        assert_eq!(DRM_IOCTL_VERSION, 0xc040_6400);
        assert_eq!(DRM_IOCTL_GEM_CLOSE, 0x4008_6409);
        assert_eq!(DRM_IOCTL_VIRTGPU_MAP, 0xc010_6441);
        assert_eq!(DRM_IOCTL_VIRTGPU_GETPARAM, 0xc010_6443);
        assert_eq!(DRM_IOCTL_VIRTGPU_RESOURCE_CREATE, 0xc038_6444);
        assert_eq!(DRM_IOCTL_VIRTGPU_TRANSFER_TO_HOST, 0xc02c_6447);
        assert_eq!(DRM_IOCTL_VIRTGPU_WAIT, 0xc008_6448);
        assert_eq!(DRM_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB, 0xc030_644a);
        assert_eq!(DRM_IOCTL_VIRTGPU_MADVISE, 0xc010_644c);
        assert_eq!(DRM_IOCTL_VIRTGPU_RESOURCE_INFO, 0xc010_6445);
        assert_eq!(DRM_IOCTL_MODE_GETRESOURCES, 0xc040_64a0);
        assert_eq!(DRM_IOCTL_MODE_SETCRTC, 0xc068_64a2);
        assert_eq!(DRM_IOCTL_MODE_RMFB, 0xc004_64af);
        assert_eq!(DRM_IOCTL_MODE_DIRTYFB, 0xc018_64b1);
        assert_eq!(DRM_IOCTL_MODE_ADDFB2, 0xc068_64b8);
        assert_eq!(DRM_FORMAT_XRGB8888, 0x3432_5258);
    }

    #[test]
    fn test_card_open_missing_node_fails_with_not_found() {
        let err = Card::open(Path::new("/nonexistent/dri/card0")).unwrap_err();

        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
