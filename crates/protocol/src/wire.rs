//! Wire layouts and constants of virtio-gpu, mirroring
//! `include/uapi/linux/virtio_gpu.h` name for name.
//!
//! Every struct is `#[repr(C)]` with little-endian fields
//! ([`zerocopy::little_endian`]) and explicit padding, so it has no implicit
//! padding, alignment 1 and exactly the size the virtio specification gives
//! (pinned in the tests below). The layout traits are derived, not written by
//! hand, so no `unsafe` is needed to view guest bytes as these structs.
//!
//! Constants are re-exported from [`virtio_bindings::virtio_gpu`] under the
//! short C macro names where the bindings have them.

#![allow(non_camel_case_types)]

use virtio_bindings::virtio_gpu as vb;
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

// ---------------------------------------------------------------------------
// Command and response types (enum virtio_gpu_ctrl_type).
// ---------------------------------------------------------------------------

/// `VIRTIO_GPU_UNDEFINED`: never a valid command.
pub const VIRTIO_GPU_UNDEFINED: u32 = vb::virtio_gpu_ctrl_type_VIRTIO_GPU_UNDEFINED;

/// `VIRTIO_GPU_CMD_GET_DISPLAY_INFO` (0x0100).
pub const VIRTIO_GPU_CMD_GET_DISPLAY_INFO: u32 =
    vb::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_GET_DISPLAY_INFO;
/// `VIRTIO_GPU_CMD_RESOURCE_CREATE_2D` (0x0101).
pub const VIRTIO_GPU_CMD_RESOURCE_CREATE_2D: u32 =
    vb::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_RESOURCE_CREATE_2D;
/// `VIRTIO_GPU_CMD_RESOURCE_UNREF` (0x0102).
pub const VIRTIO_GPU_CMD_RESOURCE_UNREF: u32 =
    vb::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_RESOURCE_UNREF;
/// `VIRTIO_GPU_CMD_SET_SCANOUT` (0x0103).
pub const VIRTIO_GPU_CMD_SET_SCANOUT: u32 = vb::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_SET_SCANOUT;
/// `VIRTIO_GPU_CMD_RESOURCE_FLUSH` (0x0104).
pub const VIRTIO_GPU_CMD_RESOURCE_FLUSH: u32 =
    vb::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_RESOURCE_FLUSH;
/// `VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D` (0x0105).
pub const VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D: u32 =
    vb::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D;
/// `VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING` (0x0106).
pub const VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING: u32 =
    vb::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING;
/// `VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING` (0x0107).
pub const VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING: u32 =
    vb::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING;
/// `VIRTIO_GPU_CMD_GET_CAPSET_INFO` (0x0108).
pub const VIRTIO_GPU_CMD_GET_CAPSET_INFO: u32 =
    vb::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_GET_CAPSET_INFO;
/// `VIRTIO_GPU_CMD_GET_CAPSET` (0x0109).
pub const VIRTIO_GPU_CMD_GET_CAPSET: u32 = vb::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_GET_CAPSET;
/// `VIRTIO_GPU_CMD_GET_EDID` (0x010a).
pub const VIRTIO_GPU_CMD_GET_EDID: u32 = vb::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_GET_EDID;
/// `VIRTIO_GPU_CMD_RESOURCE_ASSIGN_UUID` (0x010b).
pub const VIRTIO_GPU_CMD_RESOURCE_ASSIGN_UUID: u32 =
    vb::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_RESOURCE_ASSIGN_UUID;
/// `VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB` (0x010c).
pub const VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB: u32 =
    vb::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB;
/// `VIRTIO_GPU_CMD_SET_SCANOUT_BLOB` (0x010d).
pub const VIRTIO_GPU_CMD_SET_SCANOUT_BLOB: u32 =
    vb::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_SET_SCANOUT_BLOB;

/// `VIRTIO_GPU_CMD_CTX_CREATE` (0x0200, 3D).
pub const VIRTIO_GPU_CMD_CTX_CREATE: u32 = vb::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_CTX_CREATE;
/// `VIRTIO_GPU_CMD_CTX_DESTROY` (0x0201, 3D).
pub const VIRTIO_GPU_CMD_CTX_DESTROY: u32 = vb::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_CTX_DESTROY;
/// `VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE` (0x0202, 3D).
pub const VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE: u32 =
    vb::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE;
/// `VIRTIO_GPU_CMD_CTX_DETACH_RESOURCE` (0x0203, 3D).
pub const VIRTIO_GPU_CMD_CTX_DETACH_RESOURCE: u32 =
    vb::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_CTX_DETACH_RESOURCE;
/// `VIRTIO_GPU_CMD_RESOURCE_CREATE_3D` (0x0204, 3D).
pub const VIRTIO_GPU_CMD_RESOURCE_CREATE_3D: u32 =
    vb::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_RESOURCE_CREATE_3D;
/// `VIRTIO_GPU_CMD_TRANSFER_TO_HOST_3D` (0x0205, 3D).
pub const VIRTIO_GPU_CMD_TRANSFER_TO_HOST_3D: u32 =
    vb::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_TRANSFER_TO_HOST_3D;
/// `VIRTIO_GPU_CMD_TRANSFER_FROM_HOST_3D` (0x0206, 3D).
pub const VIRTIO_GPU_CMD_TRANSFER_FROM_HOST_3D: u32 =
    vb::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_TRANSFER_FROM_HOST_3D;
/// `VIRTIO_GPU_CMD_SUBMIT_3D` (0x0207, 3D).
pub const VIRTIO_GPU_CMD_SUBMIT_3D: u32 = vb::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_SUBMIT_3D;
/// `VIRTIO_GPU_CMD_RESOURCE_MAP_BLOB` (0x0208).
pub const VIRTIO_GPU_CMD_RESOURCE_MAP_BLOB: u32 =
    vb::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_RESOURCE_MAP_BLOB;
/// `VIRTIO_GPU_CMD_RESOURCE_UNMAP_BLOB` (0x0209).
pub const VIRTIO_GPU_CMD_RESOURCE_UNMAP_BLOB: u32 =
    vb::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_RESOURCE_UNMAP_BLOB;

/// `VIRTIO_GPU_CMD_UPDATE_CURSOR` (0x0300, cursor queue).
pub const VIRTIO_GPU_CMD_UPDATE_CURSOR: u32 = vb::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_UPDATE_CURSOR;
/// `VIRTIO_GPU_CMD_MOVE_CURSOR` (0x0301, cursor queue).
pub const VIRTIO_GPU_CMD_MOVE_CURSOR: u32 = vb::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_MOVE_CURSOR;

/// `VIRTIO_GPU_RESP_OK_NODATA` (0x1100).
pub const VIRTIO_GPU_RESP_OK_NODATA: u32 = vb::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_OK_NODATA;
/// `VIRTIO_GPU_RESP_OK_DISPLAY_INFO` (0x1101).
pub const VIRTIO_GPU_RESP_OK_DISPLAY_INFO: u32 =
    vb::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_OK_DISPLAY_INFO;
/// `VIRTIO_GPU_RESP_OK_CAPSET_INFO` (0x1102).
pub const VIRTIO_GPU_RESP_OK_CAPSET_INFO: u32 =
    vb::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_OK_CAPSET_INFO;
/// `VIRTIO_GPU_RESP_OK_CAPSET` (0x1103).
pub const VIRTIO_GPU_RESP_OK_CAPSET: u32 = vb::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_OK_CAPSET;
/// `VIRTIO_GPU_RESP_OK_EDID` (0x1104).
pub const VIRTIO_GPU_RESP_OK_EDID: u32 = vb::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_OK_EDID;
/// `VIRTIO_GPU_RESP_OK_RESOURCE_UUID` (0x1105).
pub const VIRTIO_GPU_RESP_OK_RESOURCE_UUID: u32 =
    vb::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_OK_RESOURCE_UUID;
/// `VIRTIO_GPU_RESP_OK_MAP_INFO` (0x1106).
pub const VIRTIO_GPU_RESP_OK_MAP_INFO: u32 = vb::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_OK_MAP_INFO;

/// `VIRTIO_GPU_RESP_ERR_UNSPEC` (0x1200).
pub const VIRTIO_GPU_RESP_ERR_UNSPEC: u32 = vb::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_ERR_UNSPEC;
/// `VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY` (0x1201).
pub const VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY: u32 =
    vb::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
/// `VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID` (0x1202).
pub const VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID: u32 =
    vb::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID;
/// `VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID` (0x1203).
pub const VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID: u32 =
    vb::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
/// `VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID` (0x1204).
pub const VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID: u32 =
    vb::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID;
/// `VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER` (0x1205).
pub const VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER: u32 =
    vb::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;

// ---------------------------------------------------------------------------
// Header flags, feature bits, limits.
// ---------------------------------------------------------------------------

/// `VIRTIO_GPU_FLAG_FENCE`: respond only once the command's work is complete,
/// echoing `fence_id`.
pub const VIRTIO_GPU_FLAG_FENCE: u32 = vb::VIRTIO_GPU_FLAG_FENCE;
/// `VIRTIO_GPU_FLAG_INFO_RING_IDX`: `ring_idx` selects the fence timeline
/// (only with `VIRTIO_GPU_F_CONTEXT_INIT`).
pub const VIRTIO_GPU_FLAG_INFO_RING_IDX: u32 = vb::VIRTIO_GPU_FLAG_INFO_RING_IDX;

/// Feature bit `VIRTIO_GPU_F_VIRGL` (3D commands).
pub const VIRTIO_GPU_F_VIRGL: u32 = vb::VIRTIO_GPU_F_VIRGL;
/// Feature bit `VIRTIO_GPU_F_EDID` (GET_EDID).
pub const VIRTIO_GPU_F_EDID: u32 = vb::VIRTIO_GPU_F_EDID;
/// Feature bit `VIRTIO_GPU_F_RESOURCE_UUID` (RESOURCE_ASSIGN_UUID).
pub const VIRTIO_GPU_F_RESOURCE_UUID: u32 = vb::VIRTIO_GPU_F_RESOURCE_UUID;
/// Feature bit `VIRTIO_GPU_F_RESOURCE_BLOB` (CREATE_BLOB, SET_SCANOUT_BLOB, ...).
pub const VIRTIO_GPU_F_RESOURCE_BLOB: u32 = vb::VIRTIO_GPU_F_RESOURCE_BLOB;
/// Feature bit `VIRTIO_GPU_F_CONTEXT_INIT` (context types, `ring_idx`).
pub const VIRTIO_GPU_F_CONTEXT_INIT: u32 = vb::VIRTIO_GPU_F_CONTEXT_INIT;
/// Feature bit `VIRTIO_GPU_F_BLOB_SWAP` (experimental, this project's; no
/// published virtio spec or Linux header uses bit 23).
///
/// Device requirements: when negotiated, the device MUST accept
/// RESOURCE_DETACH_BACKING of a `VIRTIO_GPU_BLOB_MEM_GUEST` resource, MUST
/// NOT read or write any page of the detached backing after completing the
/// detach (SET_SCANOUT_BLOB, RESOURCE_FLUSH and transfers of the blob fail
/// with an error response until it has backing again), and MUST accept a
/// later RESOURCE_ATTACH_BACKING at any guest address, rebuilding every
/// host-side view of the blob (scanout reads) from the new backing.
///
/// Driver requirements: the driver MUST NOT detach the backing of a guest
/// blob unless the feature was negotiated, and MUST re-attach backing
/// before any command that makes the device use the blob's content.
pub const VIRTIO_GPU_F_BLOB_SWAP: u32 = 23;

/// `VIRTIO_GPU_MAX_SCANOUTS`: entries in a display-info response.
pub const VIRTIO_GPU_MAX_SCANOUTS: usize = vb::VIRTIO_GPU_MAX_SCANOUTS as usize;

/// `VIRTIO_GPU_EVENT_DISPLAY`: bit of `events_read` signalling a display
/// configuration change.
pub const VIRTIO_GPU_EVENT_DISPLAY: u32 = vb::VIRTIO_GPU_EVENT_DISPLAY;

/// Size of the `edid` array of `virtio_gpu_resp_edid`.
pub const VIRTIO_GPU_EDID_MAX_SIZE: usize = 1024;

// ---------------------------------------------------------------------------
// Formats (enum virtio_gpu_formats). All are 4 bytes per pixel.
// ---------------------------------------------------------------------------

/// `VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM`.
pub const VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM: u32 =
    vb::virtio_gpu_formats_VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM;
/// `VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM`.
pub const VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM: u32 =
    vb::virtio_gpu_formats_VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM;
/// `VIRTIO_GPU_FORMAT_A8R8G8B8_UNORM`.
pub const VIRTIO_GPU_FORMAT_A8R8G8B8_UNORM: u32 =
    vb::virtio_gpu_formats_VIRTIO_GPU_FORMAT_A8R8G8B8_UNORM;
/// `VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM`.
pub const VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM: u32 =
    vb::virtio_gpu_formats_VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM;
/// `VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM`.
pub const VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM: u32 =
    vb::virtio_gpu_formats_VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM;
/// `VIRTIO_GPU_FORMAT_X8B8G8R8_UNORM`.
pub const VIRTIO_GPU_FORMAT_X8B8G8R8_UNORM: u32 =
    vb::virtio_gpu_formats_VIRTIO_GPU_FORMAT_X8B8G8R8_UNORM;
/// `VIRTIO_GPU_FORMAT_A8B8G8R8_UNORM`.
pub const VIRTIO_GPU_FORMAT_A8B8G8R8_UNORM: u32 =
    vb::virtio_gpu_formats_VIRTIO_GPU_FORMAT_A8B8G8R8_UNORM;
/// `VIRTIO_GPU_FORMAT_R8G8B8X8_UNORM`.
pub const VIRTIO_GPU_FORMAT_R8G8B8X8_UNORM: u32 =
    vb::virtio_gpu_formats_VIRTIO_GPU_FORMAT_R8G8B8X8_UNORM;

/// Bytes per pixel of a virtio-gpu format, or `None` if `format` is not one
/// of the eight `VIRTIO_GPU_FORMAT_*` values (all of which are 4 bytes).
pub fn format_bytes_per_pixel(format: u32) -> Option<u32> {
    match format {
        VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM
        | VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM
        | VIRTIO_GPU_FORMAT_A8R8G8B8_UNORM
        | VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM
        | VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM
        | VIRTIO_GPU_FORMAT_X8B8G8R8_UNORM
        | VIRTIO_GPU_FORMAT_A8B8G8R8_UNORM
        | VIRTIO_GPU_FORMAT_R8G8B8X8_UNORM => Some(4),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Blobs.
// ---------------------------------------------------------------------------

/// `VIRTIO_GPU_BLOB_MEM_GUEST`: blob backed only by guest pages.
pub const VIRTIO_GPU_BLOB_MEM_GUEST: u32 = vb::VIRTIO_GPU_BLOB_MEM_GUEST;
/// `VIRTIO_GPU_BLOB_MEM_HOST3D`: blob allocated by the host renderer.
pub const VIRTIO_GPU_BLOB_MEM_HOST3D: u32 = vb::VIRTIO_GPU_BLOB_MEM_HOST3D;
/// `VIRTIO_GPU_BLOB_MEM_HOST3D_GUEST`: host renderer blob with guest pages.
pub const VIRTIO_GPU_BLOB_MEM_HOST3D_GUEST: u32 = vb::VIRTIO_GPU_BLOB_MEM_HOST3D_GUEST;
/// `VIRTIO_GPU_BLOB_FLAG_USE_MAPPABLE`.
pub const VIRTIO_GPU_BLOB_FLAG_USE_MAPPABLE: u32 = vb::VIRTIO_GPU_BLOB_FLAG_USE_MAPPABLE;
/// `VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE`.
pub const VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE: u32 = vb::VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE;
/// `VIRTIO_GPU_BLOB_FLAG_USE_CROSS_DEVICE`.
pub const VIRTIO_GPU_BLOB_FLAG_USE_CROSS_DEVICE: u32 = vb::VIRTIO_GPU_BLOB_FLAG_USE_CROSS_DEVICE;

// ---------------------------------------------------------------------------
// Structs.
// ---------------------------------------------------------------------------

/// `struct virtio_gpu_ctrl_hdr`: leads every request and response (24 bytes).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct virtio_gpu_ctrl_hdr {
    /// Command or response type (`VIRTIO_GPU_CMD_*` / `VIRTIO_GPU_RESP_*`).
    pub type_: U32,
    /// `VIRTIO_GPU_FLAG_*` bits.
    pub flags: U32,
    /// Fence id, meaningful with `VIRTIO_GPU_FLAG_FENCE`.
    pub fence_id: U64,
    /// 3D rendering context id.
    pub ctx_id: U32,
    /// Fence timeline, meaningful with `VIRTIO_GPU_FLAG_INFO_RING_IDX`.
    pub ring_idx: u8,
    /// Explicit padding.
    pub padding: [u8; 3],
}

/// `struct virtio_gpu_rect` (16 bytes).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct virtio_gpu_rect {
    /// Left edge.
    pub x: U32,
    /// Top edge.
    pub y: U32,
    /// Width in pixels.
    pub width: U32,
    /// Height in pixels.
    pub height: U32,
}

/// `struct virtio_gpu_cursor_pos` (16 bytes).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct virtio_gpu_cursor_pos {
    /// Scanout the cursor is on.
    pub scanout_id: U32,
    /// X position.
    pub x: U32,
    /// Y position.
    pub y: U32,
    /// Explicit padding.
    pub padding: U32,
}

/// `struct virtio_gpu_update_cursor` (56 bytes).
/// `/* VIRTIO_GPU_CMD_UPDATE_CURSOR, VIRTIO_GPU_CMD_MOVE_CURSOR */`
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct virtio_gpu_update_cursor {
    /// Common header.
    pub hdr: virtio_gpu_ctrl_hdr,
    /// Cursor position.
    pub pos: virtio_gpu_cursor_pos,
    /// Cursor image resource (UPDATE only; 0 hides the cursor).
    pub resource_id: U32,
    /// Hotspot x (UPDATE only).
    pub hot_x: U32,
    /// Hotspot y (UPDATE only).
    pub hot_y: U32,
    /// Explicit padding.
    pub padding: U32,
}

/// `struct virtio_gpu_resource_unref` (32 bytes).
/// `/* VIRTIO_GPU_CMD_RESOURCE_UNREF */`
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct virtio_gpu_resource_unref {
    /// Common header.
    pub hdr: virtio_gpu_ctrl_hdr,
    /// Resource to destroy.
    pub resource_id: U32,
    /// Explicit padding.
    pub padding: U32,
}

/// `struct virtio_gpu_resource_create_2d` (40 bytes).
/// `/* VIRTIO_GPU_CMD_RESOURCE_CREATE_2D */`
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct virtio_gpu_resource_create_2d {
    /// Common header.
    pub hdr: virtio_gpu_ctrl_hdr,
    /// New resource id (guest-chosen, non-zero).
    pub resource_id: U32,
    /// `VIRTIO_GPU_FORMAT_*`.
    pub format: U32,
    /// Width in pixels.
    pub width: U32,
    /// Height in pixels.
    pub height: U32,
}

/// `struct virtio_gpu_set_scanout` (48 bytes).
/// `/* VIRTIO_GPU_CMD_SET_SCANOUT */`
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct virtio_gpu_set_scanout {
    /// Common header.
    pub hdr: virtio_gpu_ctrl_hdr,
    /// Part of the resource shown.
    pub r: virtio_gpu_rect,
    /// Scanout index.
    pub scanout_id: U32,
    /// Resource to show; 0 disables the scanout.
    pub resource_id: U32,
}

/// `struct virtio_gpu_resource_flush` (48 bytes).
/// `/* VIRTIO_GPU_CMD_RESOURCE_FLUSH */`
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct virtio_gpu_resource_flush {
    /// Common header.
    pub hdr: virtio_gpu_ctrl_hdr,
    /// Damaged rectangle.
    pub r: virtio_gpu_rect,
    /// Resource flushed to the scanouts showing it.
    pub resource_id: U32,
    /// Explicit padding.
    pub padding: U32,
}

/// `struct virtio_gpu_transfer_to_host_2d` (56 bytes).
/// `/* VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D */`
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct virtio_gpu_transfer_to_host_2d {
    /// Common header.
    pub hdr: virtio_gpu_ctrl_hdr,
    /// Rectangle copied from the backing into the host resource.
    pub r: virtio_gpu_rect,
    /// Byte offset of the rectangle's first pixel in the backing.
    pub offset: U64,
    /// Target resource.
    pub resource_id: U32,
    /// Explicit padding.
    pub padding: U32,
}

/// `struct virtio_gpu_mem_entry` (16 bytes): one guest-physical range.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct virtio_gpu_mem_entry {
    /// Guest-physical address.
    pub addr: U64,
    /// Length in bytes.
    pub length: U32,
    /// Explicit padding.
    pub padding: U32,
}

/// `struct virtio_gpu_resource_attach_backing` (32 bytes), followed on the
/// wire by `nr_entries` × [`virtio_gpu_mem_entry`].
/// `/* VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING */`
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct virtio_gpu_resource_attach_backing {
    /// Common header.
    pub hdr: virtio_gpu_ctrl_hdr,
    /// Resource receiving the backing.
    pub resource_id: U32,
    /// Number of trailing memory entries.
    pub nr_entries: U32,
}

/// `struct virtio_gpu_resource_detach_backing` (32 bytes).
/// `/* VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING */`
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct virtio_gpu_resource_detach_backing {
    /// Common header.
    pub hdr: virtio_gpu_ctrl_hdr,
    /// Resource losing its backing.
    pub resource_id: U32,
    /// Explicit padding.
    pub padding: U32,
}

/// `struct virtio_gpu_display_one` (24 bytes), nested in
/// [`virtio_gpu_resp_display_info`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct virtio_gpu_display_one {
    /// Preferred position and size.
    pub r: virtio_gpu_rect,
    /// Non-zero when the output is enabled.
    pub enabled: U32,
    /// Reserved flags.
    pub flags: U32,
}

/// `struct virtio_gpu_resp_display_info` (408 bytes).
/// `/* VIRTIO_GPU_RESP_OK_DISPLAY_INFO */`
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct virtio_gpu_resp_display_info {
    /// Common header.
    pub hdr: virtio_gpu_ctrl_hdr,
    /// One entry per possible scanout.
    pub pmodes: [virtio_gpu_display_one; VIRTIO_GPU_MAX_SCANOUTS],
}

/// `struct virtio_gpu_get_capset_info` (32 bytes).
/// `/* VIRTIO_GPU_CMD_GET_CAPSET_INFO */`
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct virtio_gpu_get_capset_info {
    /// Common header.
    pub hdr: virtio_gpu_ctrl_hdr,
    /// Index below `num_capsets`.
    pub capset_index: U32,
    /// Explicit padding.
    pub padding: U32,
}

/// `struct virtio_gpu_resp_capset_info` (40 bytes).
/// `/* VIRTIO_GPU_RESP_OK_CAPSET_INFO */`
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct virtio_gpu_resp_capset_info {
    /// Common header.
    pub hdr: virtio_gpu_ctrl_hdr,
    /// Capability set id.
    pub capset_id: U32,
    /// Highest supported version.
    pub capset_max_version: U32,
    /// Largest capset size in bytes.
    pub capset_max_size: U32,
    /// Explicit padding.
    pub padding: U32,
}

/// `struct virtio_gpu_get_capset` (32 bytes).
/// `/* VIRTIO_GPU_CMD_GET_CAPSET */`
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct virtio_gpu_get_capset {
    /// Common header.
    pub hdr: virtio_gpu_ctrl_hdr,
    /// Capability set id.
    pub capset_id: U32,
    /// Requested version.
    pub capset_version: U32,
}

/// `struct virtio_gpu_resp_capset` header (24 bytes), followed on the wire by
/// the capset data (a flexible array in C, not part of this struct).
/// `/* VIRTIO_GPU_RESP_OK_CAPSET */`
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct virtio_gpu_resp_capset {
    /// Common header.
    pub hdr: virtio_gpu_ctrl_hdr,
}

/// `struct virtio_gpu_cmd_get_edid` (32 bytes).
/// `/* VIRTIO_GPU_CMD_GET_EDID */`
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct virtio_gpu_cmd_get_edid {
    /// Common header.
    pub hdr: virtio_gpu_ctrl_hdr,
    /// Scanout index.
    pub scanout: U32,
    /// Explicit padding.
    pub padding: U32,
}

/// `struct virtio_gpu_resp_edid` (1056 bytes).
/// `/* VIRTIO_GPU_RESP_OK_EDID */`
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct virtio_gpu_resp_edid {
    /// Common header.
    pub hdr: virtio_gpu_ctrl_hdr,
    /// Valid bytes in `edid`.
    pub size: U32,
    /// Explicit padding.
    pub padding: U32,
    /// EDID blob, `size` bytes used.
    pub edid: [u8; VIRTIO_GPU_EDID_MAX_SIZE],
}

/// `struct virtio_gpu_config` (16 bytes): the device configuration space.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct virtio_gpu_config {
    /// Pending events (`VIRTIO_GPU_EVENT_*`), read-only for the driver.
    pub events_read: U32,
    /// Write-to-clear bits of `events_read`.
    pub events_clear: U32,
    /// Number of scanouts (1..=16).
    pub num_scanouts: U32,
    /// Number of capability sets.
    pub num_capsets: U32,
}

/// `struct virtio_gpu_resource_assign_uuid` (32 bytes).
/// `/* VIRTIO_GPU_CMD_RESOURCE_ASSIGN_UUID */`
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct virtio_gpu_resource_assign_uuid {
    /// Common header.
    pub hdr: virtio_gpu_ctrl_hdr,
    /// Resource to export.
    pub resource_id: U32,
    /// Explicit padding.
    pub padding: U32,
}

/// `struct virtio_gpu_resp_resource_uuid` (40 bytes).
/// `/* VIRTIO_GPU_RESP_OK_RESOURCE_UUID */`
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct virtio_gpu_resp_resource_uuid {
    /// Common header.
    pub hdr: virtio_gpu_ctrl_hdr,
    /// UUID bytes.
    pub uuid: [u8; 16],
}

/// `struct virtio_gpu_resource_create_blob` (56 bytes), followed on the wire
/// by `nr_entries` × [`virtio_gpu_mem_entry`].
/// `/* VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB */`
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct virtio_gpu_resource_create_blob {
    /// Common header.
    pub hdr: virtio_gpu_ctrl_hdr,
    /// New resource id.
    pub resource_id: U32,
    /// `VIRTIO_GPU_BLOB_MEM_*`.
    pub blob_mem: U32,
    /// `VIRTIO_GPU_BLOB_FLAG_*`.
    pub blob_flags: U32,
    /// Number of trailing memory entries (may be 0).
    pub nr_entries: U32,
    /// Host blob id (HOST3D only).
    pub blob_id: U64,
    /// Blob size in bytes.
    pub size: U64,
}

/// `struct virtio_gpu_set_scanout_blob` (96 bytes).
/// `/* VIRTIO_GPU_CMD_SET_SCANOUT_BLOB */`
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct virtio_gpu_set_scanout_blob {
    /// Common header.
    pub hdr: virtio_gpu_ctrl_hdr,
    /// Part of the blob shown.
    pub r: virtio_gpu_rect,
    /// Scanout index.
    pub scanout_id: U32,
    /// Blob resource; 0 disables the scanout.
    pub resource_id: U32,
    /// Framebuffer width.
    pub width: U32,
    /// Framebuffer height.
    pub height: U32,
    /// `VIRTIO_GPU_FORMAT_*`.
    pub format: U32,
    /// Explicit padding.
    pub padding: U32,
    /// Per-plane strides.
    pub strides: [U32; 4],
    /// Per-plane offsets.
    pub offsets: [U32; 4],
}

/// `struct virtio_gpu_resource_map_blob` (40 bytes).
/// `/* VIRTIO_GPU_CMD_RESOURCE_MAP_BLOB */` (known, not served).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct virtio_gpu_resource_map_blob {
    /// Common header.
    pub hdr: virtio_gpu_ctrl_hdr,
    /// Blob resource.
    pub resource_id: U32,
    /// Explicit padding.
    pub padding: U32,
    /// Offset in the host-visible region.
    pub offset: U64,
}

/// `struct virtio_gpu_resp_map_info` (32 bytes).
/// `/* VIRTIO_GPU_RESP_OK_MAP_INFO */` (known, not produced).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct virtio_gpu_resp_map_info {
    /// Common header.
    pub hdr: virtio_gpu_ctrl_hdr,
    /// `VIRTIO_GPU_MAP_CACHE_*`.
    pub map_info: U32,
    /// Explicit padding.
    pub padding: U32,
}

#[cfg(test)]
mod tests {
    use std::mem::{align_of, size_of};

    use super::*;

    // Sizes from the virtio 1.3 specification, section 5.7.6, which match
    // the `virtio_bindings` layout assertions for Linux's virtio_gpu.h.
    #[test]
    fn test_struct_sizes_match_spec() {
        assert_eq!(size_of::<virtio_gpu_ctrl_hdr>(), 24);
        assert_eq!(size_of::<virtio_gpu_rect>(), 16);
        assert_eq!(size_of::<virtio_gpu_cursor_pos>(), 16);
        assert_eq!(size_of::<virtio_gpu_update_cursor>(), 56);
        assert_eq!(size_of::<virtio_gpu_resource_unref>(), 32);
        assert_eq!(size_of::<virtio_gpu_resource_create_2d>(), 40);
        assert_eq!(size_of::<virtio_gpu_set_scanout>(), 48);
        assert_eq!(size_of::<virtio_gpu_resource_flush>(), 48);
        assert_eq!(size_of::<virtio_gpu_transfer_to_host_2d>(), 56);
        assert_eq!(size_of::<virtio_gpu_mem_entry>(), 16);
        assert_eq!(size_of::<virtio_gpu_resource_attach_backing>(), 32);
        assert_eq!(size_of::<virtio_gpu_resource_detach_backing>(), 32);
        assert_eq!(size_of::<virtio_gpu_display_one>(), 24);
        assert_eq!(size_of::<virtio_gpu_resp_display_info>(), 408);
        assert_eq!(size_of::<virtio_gpu_get_capset_info>(), 32);
        assert_eq!(size_of::<virtio_gpu_resp_capset_info>(), 40);
        assert_eq!(size_of::<virtio_gpu_get_capset>(), 32);
        assert_eq!(size_of::<virtio_gpu_resp_capset>(), 24);
        assert_eq!(size_of::<virtio_gpu_cmd_get_edid>(), 32);
        assert_eq!(size_of::<virtio_gpu_resp_edid>(), 1056);
        assert_eq!(size_of::<virtio_gpu_config>(), 16);
        assert_eq!(size_of::<virtio_gpu_resource_assign_uuid>(), 32);
        assert_eq!(size_of::<virtio_gpu_resp_resource_uuid>(), 40);
        assert_eq!(size_of::<virtio_gpu_resource_create_blob>(), 56);
        assert_eq!(size_of::<virtio_gpu_set_scanout_blob>(), 96);
        assert_eq!(size_of::<virtio_gpu_resource_map_blob>(), 40);
        assert_eq!(size_of::<virtio_gpu_resp_map_info>(), 32);
    }

    // The generated bindings are the C ABI layout; ours must agree with them
    // byte for byte, including for structs whose fields we re-typed.
    #[test]
    fn test_struct_sizes_match_virtio_bindings() {
        assert_eq!(
            size_of::<virtio_gpu_ctrl_hdr>(),
            size_of::<vb::virtio_gpu_ctrl_hdr>()
        );
        assert_eq!(
            size_of::<virtio_gpu_transfer_to_host_2d>(),
            size_of::<vb::virtio_gpu_transfer_to_host_2d>()
        );
        assert_eq!(
            size_of::<virtio_gpu_resource_create_blob>(),
            size_of::<vb::virtio_gpu_resource_create_blob>()
        );
        assert_eq!(
            size_of::<virtio_gpu_set_scanout_blob>(),
            size_of::<vb::virtio_gpu_set_scanout_blob>()
        );
        assert_eq!(
            size_of::<virtio_gpu_resp_display_info>(),
            size_of::<vb::virtio_gpu_resp_display_info>()
        );
        assert_eq!(
            size_of::<virtio_gpu_resp_edid>(),
            size_of::<vb::virtio_gpu_resp_edid>()
        );
    }

    #[test]
    fn test_wire_structs_alignment_is_one() {
        assert_eq!(align_of::<virtio_gpu_ctrl_hdr>(), 1);
        assert_eq!(align_of::<virtio_gpu_resource_create_blob>(), 1);
        assert_eq!(align_of::<virtio_gpu_transfer_to_host_2d>(), 1);
    }

    #[test]
    fn test_ctrl_hdr_fields_are_little_endian_at_spec_offsets() {
        let hdr = virtio_gpu_ctrl_hdr {
            type_: U32::new(0x0102),
            flags: U32::new(VIRTIO_GPU_FLAG_FENCE),
            fence_id: U64::new(0x1122_3344_5566_7788),
            ctx_id: U32::new(7),
            ring_idx: 3,
            padding: [0; 3],
        };

        let bytes = hdr.as_bytes();

        assert_eq!(&bytes[0..4], &[0x02, 0x01, 0, 0]);
        assert_eq!(&bytes[4..8], &[1, 0, 0, 0]);
        assert_eq!(
            &bytes[8..16],
            &[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]
        );
        assert_eq!(&bytes[16..20], &[7, 0, 0, 0]);
        assert_eq!(bytes[20], 3);
    }

    #[test]
    fn test_transfer_to_host_2d_offset_field_at_byte_40() {
        let cmd = virtio_gpu_transfer_to_host_2d {
            offset: U64::new(0xAB),
            resource_id: U32::new(0xCD),
            ..Default::default()
        };

        let bytes = cmd.as_bytes();

        assert_eq!(bytes[40], 0xAB);
        assert_eq!(bytes[48], 0xCD);
    }

    #[test]
    fn test_command_type_constants_match_spec_values() {
        assert_eq!(VIRTIO_GPU_CMD_GET_DISPLAY_INFO, 0x0100);
        assert_eq!(VIRTIO_GPU_CMD_SET_SCANOUT_BLOB, 0x010d);
        assert_eq!(VIRTIO_GPU_CMD_CTX_CREATE, 0x0200);
        assert_eq!(VIRTIO_GPU_CMD_RESOURCE_UNMAP_BLOB, 0x0209);
        assert_eq!(VIRTIO_GPU_CMD_UPDATE_CURSOR, 0x0300);
        assert_eq!(VIRTIO_GPU_CMD_MOVE_CURSOR, 0x0301);
        assert_eq!(VIRTIO_GPU_RESP_OK_NODATA, 0x1100);
        assert_eq!(VIRTIO_GPU_RESP_OK_MAP_INFO, 0x1106);
        assert_eq!(VIRTIO_GPU_RESP_ERR_UNSPEC, 0x1200);
        assert_eq!(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, 0x1205);
    }

    #[test]
    fn test_format_bytes_per_pixel_known_and_unknown() {
        assert_eq!(
            format_bytes_per_pixel(VIRTIO_GPU_FORMAT_R8G8B8X8_UNORM),
            Some(4)
        );
        assert_eq!(
            format_bytes_per_pixel(VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM),
            Some(4)
        );
        assert_eq!(format_bytes_per_pixel(0), None);
        assert_eq!(format_bytes_per_pixel(5), None);
    }
}
