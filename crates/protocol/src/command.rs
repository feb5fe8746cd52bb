//! Decoding of control-queue and cursor-queue requests into [`GpuCommand`].
//!
//! The input is the device-readable part of one descriptor chain, already
//! copied into a contiguous buffer by the caller (see [`max_command_len`] for
//! how much to copy at most). Decoding never panics and never allocates more
//! than [`DecodeLimits::max_backing_entries`] memory entries, and never more
//! than the bytes actually present can hold.
//!
//! Trailing bytes after a fixed-size command are ignored, as in QEMU and
//! crosvm: drivers may pad requests.

use std::mem::size_of;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::wire::*;

/// QEMU's cap on memory entries per ATTACH_BACKING / CREATE_BLOB, the
/// default of the daemon's `--max-backing-entries`.
pub const DEFAULT_MAX_BACKING_ENTRIES: u32 = 16384;

/// Metric name of requests that could not be decoded into a [`GpuCommand`].
pub const UNKNOWN_COMMAND_NAME: &str = "unknown";

/// Decoded `virtio_gpu_ctrl_hdr`, in native byte order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtrlHeader {
    /// Command or response type.
    pub type_: u32,
    /// `VIRTIO_GPU_FLAG_*` bits, as sent.
    pub flags: u32,
    /// Fence id (meaningful when [`CtrlHeader::is_fenced`]).
    pub fence_id: u64,
    /// Context id.
    pub ctx_id: u32,
    /// Fence ring index (meaningful when [`CtrlHeader::has_ring_idx`]).
    pub ring_idx: u8,
}

impl CtrlHeader {
    /// True when the request carries `VIRTIO_GPU_FLAG_FENCE`: the response
    /// must be written only after the command's work is complete.
    pub fn is_fenced(&self) -> bool {
        self.flags & VIRTIO_GPU_FLAG_FENCE != 0
    }

    /// True when the request carries `VIRTIO_GPU_FLAG_INFO_RING_IDX`.
    pub fn has_ring_idx(&self) -> bool {
        self.flags & VIRTIO_GPU_FLAG_INFO_RING_IDX != 0
    }

    /// Converts to the wire layout (padding zeroed).
    pub fn to_wire(&self) -> virtio_gpu_ctrl_hdr {
        virtio_gpu_ctrl_hdr {
            type_: self.type_.into(),
            flags: self.flags.into(),
            fence_id: self.fence_id.into(),
            ctx_id: self.ctx_id.into(),
            ring_idx: self.ring_idx,
            padding: [0; 3],
        }
    }
}

impl From<&virtio_gpu_ctrl_hdr> for CtrlHeader {
    fn from(h: &virtio_gpu_ctrl_hdr) -> Self {
        CtrlHeader {
            type_: h.type_.get(),
            flags: h.flags.get(),
            fence_id: h.fence_id.get(),
            ctx_id: h.ctx_id.get(),
            ring_idx: h.ring_idx,
        }
    }
}

/// Decoded `virtio_gpu_rect`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rect {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

impl From<&virtio_gpu_rect> for Rect {
    fn from(r: &virtio_gpu_rect) -> Self {
        Rect {
            x: r.x.get(),
            y: r.y.get(),
            width: r.width.get(),
            height: r.height.get(),
        }
    }
}

impl Rect {
    /// Converts to the wire layout.
    pub fn to_wire(&self) -> virtio_gpu_rect {
        virtio_gpu_rect {
            x: self.x.into(),
            y: self.y.into(),
            width: self.width.into(),
            height: self.height.into(),
        }
    }
}

/// Decoded `virtio_gpu_mem_entry`: one guest-physical range. Not validated
/// here: zero length, `addr + length` overflow and ranges outside guest
/// memory are the resource state machine's to reject.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MemEntry {
    /// Guest-physical address.
    pub addr: u64,
    /// Length in bytes.
    pub length: u32,
}

impl MemEntry {
    /// Converts to the wire layout (padding zeroed).
    pub fn to_wire(&self) -> virtio_gpu_mem_entry {
        virtio_gpu_mem_entry {
            addr: self.addr.into(),
            length: self.length.into(),
            padding: 0.into(),
        }
    }
}

/// Decoded `virtio_gpu_cursor_pos`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CursorPos {
    /// Scanout the cursor is on.
    pub scanout_id: u32,
    /// X position.
    pub x: u32,
    /// Y position.
    pub y: u32,
}

impl CursorPos {
    fn to_wire(self) -> virtio_gpu_cursor_pos {
        virtio_gpu_cursor_pos {
            scanout_id: self.scanout_id.into(),
            x: self.x.into(),
            y: self.y.into(),
            padding: 0.into(),
        }
    }
}

/// Bounds applied while decoding guest requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest `nr_entries` accepted in RESOURCE_ATTACH_BACKING and
    /// RESOURCE_CREATE_BLOB (the daemon's `--max-backing-entries`).
    pub max_backing_entries: u32,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_backing_entries: DEFAULT_MAX_BACKING_ENTRIES,
        }
    }
}

/// A request the device serves, with its fields decoded to native types.
///
/// The header (type, fence, context) is returned separately by
/// [`decode_command`] as a [`CtrlHeader`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GpuCommand {
    /// `VIRTIO_GPU_CMD_GET_DISPLAY_INFO`.
    GetDisplayInfo,
    /// `VIRTIO_GPU_CMD_GET_EDID`.
    GetEdid {
        /// Scanout index.
        scanout: u32,
    },
    /// `VIRTIO_GPU_CMD_RESOURCE_CREATE_2D`.
    ResourceCreate2d {
        /// New resource id.
        resource_id: u32,
        /// `VIRTIO_GPU_FORMAT_*` (not validated here).
        format: u32,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// `VIRTIO_GPU_CMD_RESOURCE_UNREF`.
    ResourceUnref {
        /// Resource to destroy.
        resource_id: u32,
    },
    /// `VIRTIO_GPU_CMD_SET_SCANOUT`.
    SetScanout {
        /// Scanout index.
        scanout_id: u32,
        /// Resource shown, 0 to disable.
        resource_id: u32,
        /// Part of the resource shown.
        rect: Rect,
    },
    /// `VIRTIO_GPU_CMD_RESOURCE_FLUSH`.
    ResourceFlush {
        /// Resource flushed.
        resource_id: u32,
        /// Damaged rectangle.
        rect: Rect,
    },
    /// `VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D`.
    TransferToHost2d {
        /// Target resource.
        resource_id: u32,
        /// Rectangle copied.
        rect: Rect,
        /// Byte offset of the rectangle in the backing.
        offset: u64,
    },
    /// `VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING`.
    ///
    /// `entries` may be empty: a zero-entry ATTACH is well formed on the
    /// wire but semantically invalid, and the resource state machine must
    /// answer it with `ERR_INVALID_PARAMETER` (decoding does not reject it,
    /// so it is counted as an ATTACH command, not as a decode error).
    ResourceAttachBacking {
        /// Resource receiving the backing.
        resource_id: u32,
        /// Guest ranges, at most [`DecodeLimits::max_backing_entries`].
        entries: Vec<MemEntry>,
    },
    /// `VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING`.
    ResourceDetachBacking {
        /// Resource losing its backing.
        resource_id: u32,
    },
    /// `VIRTIO_GPU_CMD_GET_CAPSET_INFO`.
    GetCapsetInfo {
        /// Capset index.
        capset_index: u32,
    },
    /// `VIRTIO_GPU_CMD_GET_CAPSET`.
    GetCapset {
        /// Capset id.
        capset_id: u32,
        /// Requested version.
        capset_version: u32,
    },
    /// `VIRTIO_GPU_CMD_RESOURCE_ASSIGN_UUID`.
    ResourceAssignUuid {
        /// Resource to export.
        resource_id: u32,
    },
    /// `VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB`. `entries` may legitimately be
    /// empty (backing attached later).
    ResourceCreateBlob {
        /// New resource id.
        resource_id: u32,
        /// `VIRTIO_GPU_BLOB_MEM_*` (not validated here).
        blob_mem: u32,
        /// `VIRTIO_GPU_BLOB_FLAG_*`.
        blob_flags: u32,
        /// Host blob id.
        blob_id: u64,
        /// Size in bytes.
        size: u64,
        /// Guest ranges, at most [`DecodeLimits::max_backing_entries`].
        entries: Vec<MemEntry>,
    },
    /// `VIRTIO_GPU_CMD_SET_SCANOUT_BLOB`.
    SetScanoutBlob {
        /// Scanout index.
        scanout_id: u32,
        /// Blob resource, 0 to disable.
        resource_id: u32,
        /// Framebuffer width.
        width: u32,
        /// Framebuffer height.
        height: u32,
        /// `VIRTIO_GPU_FORMAT_*`.
        format: u32,
        /// Per-plane strides.
        strides: [u32; 4],
        /// Per-plane offsets.
        offsets: [u32; 4],
        /// Part of the framebuffer shown.
        rect: Rect,
    },
    /// `VIRTIO_GPU_CMD_UPDATE_CURSOR` (cursor queue).
    UpdateCursor {
        /// Position.
        pos: CursorPos,
        /// Cursor image resource, 0 hides the cursor.
        resource_id: u32,
        /// Hotspot x.
        hot_x: u32,
        /// Hotspot y.
        hot_y: u32,
    },
    /// `VIRTIO_GPU_CMD_MOVE_CURSOR` (cursor queue).
    MoveCursor {
        /// New position.
        pos: CursorPos,
        /// Cursor image resource; 0 hides the cursor.
        resource_id: u32,
    },
}

/// Why a request could not be decoded. Every variant maps to a guest-visible
/// response code through [`DecodeError::error_code`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// `nr_entries` promises more memory entries than the bytes present hold.
    #[error(
        "request announces {count} memory entries but only {have_bytes} bytes of entries follow"
    )]
    EntriesTruncated {
        /// `nr_entries` as sent.
        count: u32,
        /// Bytes present after the fixed part.
        have_bytes: usize,
    },
    /// `nr_entries` exceeds [`DecodeLimits::max_backing_entries`].
    #[error("request announces {count} memory entries, the limit is {max}")]
    TooManyEntries {
        /// `nr_entries` as sent.
        count: u32,
        /// The configured limit.
        max: u32,
    },
    /// The request is shorter than its fixed-size struct.
    #[error("{what} needs {need} bytes, the request has {have}")]
    TooShort {
        /// C name of the struct being read.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// The type is no virtio-gpu command at all.
    #[error("unknown command type {type_:#06x}")]
    UnknownCommand {
        /// Type as sent.
        type_: u32,
    },
    /// A known virtio-gpu command this device does not serve (3D, map blob).
    #[error("command {} ({type_:#06x}) is not supported", command_c_name(*type_))]
    Unsupported {
        /// Type as sent.
        type_: u32,
    },
}

impl DecodeError {
    /// Response code to send to the guest for this error.
    pub fn error_code(&self) -> crate::ErrorCode {
        match self {
            DecodeError::TooShort { .. }
            | DecodeError::UnknownCommand { .. }
            | DecodeError::Unsupported { .. } => crate::ErrorCode::Unspec,
            DecodeError::TooManyEntries { .. } | DecodeError::EntriesTruncated { .. } => {
                crate::ErrorCode::InvalidParameter
            }
        }
    }
}

/// C macro name of a command type, for logs; `"UNKNOWN"` for other values.
pub fn command_c_name(type_: u32) -> &'static str {
    match type_ {
        VIRTIO_GPU_CMD_GET_DISPLAY_INFO => "VIRTIO_GPU_CMD_GET_DISPLAY_INFO",
        VIRTIO_GPU_CMD_RESOURCE_CREATE_2D => "VIRTIO_GPU_CMD_RESOURCE_CREATE_2D",
        VIRTIO_GPU_CMD_RESOURCE_UNREF => "VIRTIO_GPU_CMD_RESOURCE_UNREF",
        VIRTIO_GPU_CMD_SET_SCANOUT => "VIRTIO_GPU_CMD_SET_SCANOUT",
        VIRTIO_GPU_CMD_RESOURCE_FLUSH => "VIRTIO_GPU_CMD_RESOURCE_FLUSH",
        VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D => "VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D",
        VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING => "VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING",
        VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING => "VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING",
        VIRTIO_GPU_CMD_GET_CAPSET_INFO => "VIRTIO_GPU_CMD_GET_CAPSET_INFO",
        VIRTIO_GPU_CMD_GET_CAPSET => "VIRTIO_GPU_CMD_GET_CAPSET",
        VIRTIO_GPU_CMD_GET_EDID => "VIRTIO_GPU_CMD_GET_EDID",
        VIRTIO_GPU_CMD_RESOURCE_ASSIGN_UUID => "VIRTIO_GPU_CMD_RESOURCE_ASSIGN_UUID",
        VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB => "VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB",
        VIRTIO_GPU_CMD_SET_SCANOUT_BLOB => "VIRTIO_GPU_CMD_SET_SCANOUT_BLOB",
        VIRTIO_GPU_CMD_CTX_CREATE => "VIRTIO_GPU_CMD_CTX_CREATE",
        VIRTIO_GPU_CMD_CTX_DESTROY => "VIRTIO_GPU_CMD_CTX_DESTROY",
        VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE => "VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE",
        VIRTIO_GPU_CMD_CTX_DETACH_RESOURCE => "VIRTIO_GPU_CMD_CTX_DETACH_RESOURCE",
        VIRTIO_GPU_CMD_RESOURCE_CREATE_3D => "VIRTIO_GPU_CMD_RESOURCE_CREATE_3D",
        VIRTIO_GPU_CMD_TRANSFER_TO_HOST_3D => "VIRTIO_GPU_CMD_TRANSFER_TO_HOST_3D",
        VIRTIO_GPU_CMD_TRANSFER_FROM_HOST_3D => "VIRTIO_GPU_CMD_TRANSFER_FROM_HOST_3D",
        VIRTIO_GPU_CMD_SUBMIT_3D => "VIRTIO_GPU_CMD_SUBMIT_3D",
        VIRTIO_GPU_CMD_RESOURCE_MAP_BLOB => "VIRTIO_GPU_CMD_RESOURCE_MAP_BLOB",
        VIRTIO_GPU_CMD_RESOURCE_UNMAP_BLOB => "VIRTIO_GPU_CMD_RESOURCE_UNMAP_BLOB",
        VIRTIO_GPU_CMD_UPDATE_CURSOR => "VIRTIO_GPU_CMD_UPDATE_CURSOR",
        VIRTIO_GPU_CMD_MOVE_CURSOR => "VIRTIO_GPU_CMD_MOVE_CURSOR",
        _ => "UNKNOWN",
    }
}

/// Metric name (`vugpu_commands_total{cmd=...}`) for a raw command type:
/// the [`GpuCommand::name`] of served commands, [`UNKNOWN_COMMAND_NAME`] for
/// everything else. Lets the daemon count a request whose body failed to
/// decode under its command.
pub fn command_name(type_: u32) -> &'static str {
    match type_ {
        VIRTIO_GPU_CMD_GET_DISPLAY_INFO => "get_display_info",
        VIRTIO_GPU_CMD_GET_EDID => "get_edid",
        VIRTIO_GPU_CMD_RESOURCE_CREATE_2D => "resource_create_2d",
        VIRTIO_GPU_CMD_RESOURCE_UNREF => "resource_unref",
        VIRTIO_GPU_CMD_SET_SCANOUT => "set_scanout",
        VIRTIO_GPU_CMD_RESOURCE_FLUSH => "resource_flush",
        VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D => "transfer_to_host_2d",
        VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING => "resource_attach_backing",
        VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING => "resource_detach_backing",
        VIRTIO_GPU_CMD_GET_CAPSET_INFO => "get_capset_info",
        VIRTIO_GPU_CMD_GET_CAPSET => "get_capset",
        VIRTIO_GPU_CMD_RESOURCE_ASSIGN_UUID => "resource_assign_uuid",
        VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB => "resource_create_blob",
        VIRTIO_GPU_CMD_SET_SCANOUT_BLOB => "set_scanout_blob",
        VIRTIO_GPU_CMD_UPDATE_CURSOR => "update_cursor",
        VIRTIO_GPU_CMD_MOVE_CURSOR => "move_cursor",
        _ => UNKNOWN_COMMAND_NAME,
    }
}

/// All metric names [`command_name`] can return, in contract order
/// (useful to pre-register counters at zero).
pub const COMMAND_NAMES: [&str; 17] = [
    "get_display_info",
    "get_edid",
    "resource_create_2d",
    "resource_unref",
    "set_scanout",
    "resource_flush",
    "transfer_to_host_2d",
    "resource_attach_backing",
    "resource_detach_backing",
    "get_capset_info",
    "get_capset",
    "resource_assign_uuid",
    "resource_create_blob",
    "set_scanout_blob",
    "update_cursor",
    "move_cursor",
    UNKNOWN_COMMAND_NAME,
];

impl GpuCommand {
    /// Metric name of the command (`vugpu_commands_total{cmd=...}`).
    pub fn name(&self) -> &'static str {
        command_name(self.type_())
    }

    /// The `VIRTIO_GPU_CMD_*` type this command is sent with.
    pub fn type_(&self) -> u32 {
        match self {
            GpuCommand::GetDisplayInfo => VIRTIO_GPU_CMD_GET_DISPLAY_INFO,
            GpuCommand::GetEdid { .. } => VIRTIO_GPU_CMD_GET_EDID,
            GpuCommand::ResourceCreate2d { .. } => VIRTIO_GPU_CMD_RESOURCE_CREATE_2D,
            GpuCommand::ResourceUnref { .. } => VIRTIO_GPU_CMD_RESOURCE_UNREF,
            GpuCommand::SetScanout { .. } => VIRTIO_GPU_CMD_SET_SCANOUT,
            GpuCommand::ResourceFlush { .. } => VIRTIO_GPU_CMD_RESOURCE_FLUSH,
            GpuCommand::TransferToHost2d { .. } => VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D,
            GpuCommand::ResourceAttachBacking { .. } => VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING,
            GpuCommand::ResourceDetachBacking { .. } => VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING,
            GpuCommand::GetCapsetInfo { .. } => VIRTIO_GPU_CMD_GET_CAPSET_INFO,
            GpuCommand::GetCapset { .. } => VIRTIO_GPU_CMD_GET_CAPSET,
            GpuCommand::ResourceAssignUuid { .. } => VIRTIO_GPU_CMD_RESOURCE_ASSIGN_UUID,
            GpuCommand::ResourceCreateBlob { .. } => VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB,
            GpuCommand::SetScanoutBlob { .. } => VIRTIO_GPU_CMD_SET_SCANOUT_BLOB,
            GpuCommand::UpdateCursor { .. } => VIRTIO_GPU_CMD_UPDATE_CURSOR,
            GpuCommand::MoveCursor { .. } => VIRTIO_GPU_CMD_MOVE_CURSOR,
        }
    }

    /// True for the two commands that belong on the cursor queue. The
    /// decoder accepts any command on any queue; the daemon uses this to
    /// refuse a command sent to the wrong queue.
    pub fn is_cursor(&self) -> bool {
        matches!(
            self,
            GpuCommand::UpdateCursor { .. } | GpuCommand::MoveCursor { .. }
        )
    }

    /// Encodes the command as a driver would put it on the queue, with
    /// `hdr`'s flags, fence, context and ring index (its `type_` is replaced
    /// by [`GpuCommand::type_`]). Used by tests and test harnesses acting as
    /// the guest; the result decodes back to `(hdr, self)`.
    pub fn to_bytes(&self, hdr: &CtrlHeader) -> Vec<u8> {
        let hdr = CtrlHeader {
            type_: self.type_(),
            ..*hdr
        }
        .to_wire();
        match self {
            GpuCommand::GetDisplayInfo => hdr.as_bytes().to_vec(),
            GpuCommand::GetEdid { scanout } => virtio_gpu_cmd_get_edid {
                hdr,
                scanout: (*scanout).into(),
                padding: 0.into(),
            }
            .as_bytes()
            .to_vec(),
            GpuCommand::ResourceCreate2d {
                resource_id,
                format,
                width,
                height,
            } => virtio_gpu_resource_create_2d {
                hdr,
                resource_id: (*resource_id).into(),
                format: (*format).into(),
                width: (*width).into(),
                height: (*height).into(),
            }
            .as_bytes()
            .to_vec(),
            GpuCommand::ResourceUnref { resource_id } => virtio_gpu_resource_unref {
                hdr,
                resource_id: (*resource_id).into(),
                padding: 0.into(),
            }
            .as_bytes()
            .to_vec(),
            GpuCommand::SetScanout {
                scanout_id,
                resource_id,
                rect,
            } => virtio_gpu_set_scanout {
                hdr,
                r: rect.to_wire(),
                scanout_id: (*scanout_id).into(),
                resource_id: (*resource_id).into(),
            }
            .as_bytes()
            .to_vec(),
            GpuCommand::ResourceFlush { resource_id, rect } => virtio_gpu_resource_flush {
                hdr,
                r: rect.to_wire(),
                resource_id: (*resource_id).into(),
                padding: 0.into(),
            }
            .as_bytes()
            .to_vec(),
            GpuCommand::TransferToHost2d {
                resource_id,
                rect,
                offset,
            } => virtio_gpu_transfer_to_host_2d {
                hdr,
                r: rect.to_wire(),
                offset: (*offset).into(),
                resource_id: (*resource_id).into(),
                padding: 0.into(),
            }
            .as_bytes()
            .to_vec(),
            GpuCommand::ResourceAttachBacking {
                resource_id,
                entries,
            } => {
                let fixed = virtio_gpu_resource_attach_backing {
                    hdr,
                    resource_id: (*resource_id).into(),
                    nr_entries: saturating_u32(entries.len()).into(),
                };
                with_entries(fixed.as_bytes(), entries)
            }
            GpuCommand::ResourceDetachBacking { resource_id } => {
                virtio_gpu_resource_detach_backing {
                    hdr,
                    resource_id: (*resource_id).into(),
                    padding: 0.into(),
                }
                .as_bytes()
                .to_vec()
            }
            GpuCommand::GetCapsetInfo { capset_index } => virtio_gpu_get_capset_info {
                hdr,
                capset_index: (*capset_index).into(),
                padding: 0.into(),
            }
            .as_bytes()
            .to_vec(),
            GpuCommand::GetCapset {
                capset_id,
                capset_version,
            } => virtio_gpu_get_capset {
                hdr,
                capset_id: (*capset_id).into(),
                capset_version: (*capset_version).into(),
            }
            .as_bytes()
            .to_vec(),
            GpuCommand::ResourceAssignUuid { resource_id } => virtio_gpu_resource_assign_uuid {
                hdr,
                resource_id: (*resource_id).into(),
                padding: 0.into(),
            }
            .as_bytes()
            .to_vec(),
            GpuCommand::ResourceCreateBlob {
                resource_id,
                blob_mem,
                blob_flags,
                blob_id,
                size,
                entries,
            } => {
                let fixed = virtio_gpu_resource_create_blob {
                    hdr,
                    resource_id: (*resource_id).into(),
                    blob_mem: (*blob_mem).into(),
                    blob_flags: (*blob_flags).into(),
                    nr_entries: saturating_u32(entries.len()).into(),
                    blob_id: (*blob_id).into(),
                    size: (*size).into(),
                };
                with_entries(fixed.as_bytes(), entries)
            }
            GpuCommand::SetScanoutBlob {
                scanout_id,
                resource_id,
                width,
                height,
                format,
                strides,
                offsets,
                rect,
            } => virtio_gpu_set_scanout_blob {
                hdr,
                r: rect.to_wire(),
                scanout_id: (*scanout_id).into(),
                resource_id: (*resource_id).into(),
                width: (*width).into(),
                height: (*height).into(),
                format: (*format).into(),
                padding: 0.into(),
                strides: strides.map(Into::into),
                offsets: offsets.map(Into::into),
            }
            .as_bytes()
            .to_vec(),
            GpuCommand::UpdateCursor {
                pos,
                resource_id,
                hot_x,
                hot_y,
            } => virtio_gpu_update_cursor {
                hdr,
                pos: pos.to_wire(),
                resource_id: (*resource_id).into(),
                hot_x: (*hot_x).into(),
                hot_y: (*hot_y).into(),
                padding: 0.into(),
            }
            .as_bytes()
            .to_vec(),
            GpuCommand::MoveCursor { pos, resource_id } => virtio_gpu_update_cursor {
                hdr,
                pos: pos.to_wire(),
                resource_id: (*resource_id).into(),
                ..Default::default()
            }
            .as_bytes()
            .to_vec(),
        }
    }
}

fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn with_entries(fixed: &[u8], entries: &[MemEntry]) -> Vec<u8> {
    let entry_size = size_of::<virtio_gpu_mem_entry>();
    let mut out = Vec::with_capacity(fixed.len() + entries.len() * entry_size);
    out.extend_from_slice(fixed);
    for e in entries {
        out.extend_from_slice(e.to_wire().as_bytes());
    }
    out
}

/// Largest number of readable bytes a legal request can have under
/// `limits`: the biggest fixed-size command, or a CREATE_BLOB carrying the
/// maximum number of memory entries. The daemon copies at most this many
/// bytes of a descriptor chain; anything beyond is trailing garbage that
/// decoding would ignore anyway.
pub fn max_command_len(limits: &DecodeLimits) -> usize {
    let entries =
        (limits.max_backing_entries as usize).saturating_mul(size_of::<virtio_gpu_mem_entry>());
    let with_entries = size_of::<virtio_gpu_resource_create_blob>()
        .max(size_of::<virtio_gpu_resource_attach_backing>())
        .saturating_add(entries);
    with_entries.max(size_of::<virtio_gpu_set_scanout_blob>())
}

/// Reads a `T` from the start of `bytes`, returning it and the rest.
fn read_struct<'a, T: FromBytes + KnownLayout + Immutable>(
    bytes: &'a [u8],
    what: &'static str,
) -> Result<(T, &'a [u8]), DecodeError> {
    T::read_from_prefix(bytes).map_err(|_| DecodeError::TooShort {
        what,
        need: size_of::<T>(),
        have: bytes.len(),
    })
}

/// Decodes only the header, so a response (or fence) can still be produced
/// for a request whose body is malformed or unsupported.
///
/// # Errors
///
/// [`DecodeError::TooShort`] if `bytes` holds less than 24 bytes.
pub fn decode_header(bytes: &[u8]) -> Result<CtrlHeader, DecodeError> {
    let (hdr, _) = read_struct::<virtio_gpu_ctrl_hdr>(bytes, "virtio_gpu_ctrl_hdr")?;
    Ok(CtrlHeader::from(&hdr))
}

/// The `count` memory entries at the start of `rest`, in place, after
/// checking the count against the limit and the bytes present.
fn entries_in_place<'a>(
    count: u32,
    rest: &'a [u8],
    limits: &DecodeLimits,
) -> Result<&'a [virtio_gpu_mem_entry], DecodeError> {
    if count > limits.max_backing_entries {
        return Err(DecodeError::TooManyEntries {
            count,
            max: limits.max_backing_entries,
        });
    }
    <[virtio_gpu_mem_entry]>::ref_from_prefix_with_elems(rest, count as usize)
        .map(|(entries, _)| entries)
        .map_err(|_| DecodeError::EntriesTruncated {
            count,
            have_bytes: rest.len(),
        })
}

/// Decodes a RESOURCE_ATTACH_BACKING request without copying its entries:
/// returns the header, the resource id and the entries as they sit in
/// `bytes` (little-endian wire structs), for a caller that validates them
/// straight from the request (e.g. `vugpu_resources::GpuState::
/// attach_backing_entries`). [`decode_command`] gives the same request as a
/// [`GpuCommand::ResourceAttachBacking`] with the entries copied into a
/// vector.
///
/// # Errors
///
/// As [`decode_command`] for this request; [`DecodeError::Unsupported`] if
/// `bytes` holds another command.
pub fn decode_attach_backing_in_place<'a>(
    bytes: &'a [u8],
    limits: &DecodeLimits,
) -> Result<(CtrlHeader, u32, &'a [virtio_gpu_mem_entry]), DecodeError> {
    let hdr = decode_header(bytes)?;
    if hdr.type_ != VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING {
        return Err(DecodeError::Unsupported { type_: hdr.type_ });
    }
    let (c, rest) = read_struct::<virtio_gpu_resource_attach_backing>(
        bytes,
        "virtio_gpu_resource_attach_backing",
    )?;
    let entries = entries_in_place(c.nr_entries.get(), rest, limits)?;
    Ok((hdr, c.resource_id.get(), entries))
}

/// Decodes `count` memory entries from `rest`, checking the count against
/// the limit and the bytes present *before* allocating.
fn decode_entries(
    count: u32,
    rest: &[u8],
    limits: &DecodeLimits,
) -> Result<Vec<MemEntry>, DecodeError> {
    // `count` is bounded by the limit and by the bytes actually present, so
    // the allocation below is at most `rest.len() / 16` elements whatever
    // the guest wrote.
    let raw = entries_in_place(count, rest, limits)?;
    let mut entries = Vec::with_capacity(raw.len());
    entries.extend(raw.iter().map(|e| MemEntry {
        addr: e.addr.get(),
        length: e.length.get(),
    }));
    Ok(entries)
}

/// Decodes one request (control or cursor queue).
///
/// `bytes` is the device-readable part of the descriptor chain. Returns the
/// header and the decoded command.
///
/// # Errors
///
/// - [`DecodeError::TooShort`]: shorter than the header or the command's
///   fixed struct.
/// - [`DecodeError::UnknownCommand`]: type is no virtio-gpu command.
/// - [`DecodeError::Unsupported`]: 3D and map/unmap-blob commands.
/// - [`DecodeError::TooManyEntries`]: `nr_entries` above
///   `limits.max_backing_entries`.
/// - [`DecodeError::EntriesTruncated`]: fewer entry bytes than `nr_entries`
///   announces.
///
/// On error, [`decode_header`] still gives the fence information when
/// `bytes` holds at least a header.
pub fn decode_command(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<(CtrlHeader, GpuCommand), DecodeError> {
    let hdr = decode_header(bytes)?;
    let cmd = match hdr.type_ {
        VIRTIO_GPU_CMD_GET_DISPLAY_INFO => GpuCommand::GetDisplayInfo,
        VIRTIO_GPU_CMD_GET_EDID => {
            let (c, _) = read_struct::<virtio_gpu_cmd_get_edid>(bytes, "virtio_gpu_cmd_get_edid")?;
            GpuCommand::GetEdid {
                scanout: c.scanout.get(),
            }
        }
        VIRTIO_GPU_CMD_RESOURCE_CREATE_2D => {
            let (c, _) = read_struct::<virtio_gpu_resource_create_2d>(
                bytes,
                "virtio_gpu_resource_create_2d",
            )?;
            GpuCommand::ResourceCreate2d {
                resource_id: c.resource_id.get(),
                format: c.format.get(),
                width: c.width.get(),
                height: c.height.get(),
            }
        }
        VIRTIO_GPU_CMD_RESOURCE_UNREF => {
            let (c, _) =
                read_struct::<virtio_gpu_resource_unref>(bytes, "virtio_gpu_resource_unref")?;
            GpuCommand::ResourceUnref {
                resource_id: c.resource_id.get(),
            }
        }
        VIRTIO_GPU_CMD_SET_SCANOUT => {
            let (c, _) = read_struct::<virtio_gpu_set_scanout>(bytes, "virtio_gpu_set_scanout")?;
            GpuCommand::SetScanout {
                scanout_id: c.scanout_id.get(),
                resource_id: c.resource_id.get(),
                rect: Rect::from(&c.r),
            }
        }
        VIRTIO_GPU_CMD_RESOURCE_FLUSH => {
            let (c, _) =
                read_struct::<virtio_gpu_resource_flush>(bytes, "virtio_gpu_resource_flush")?;
            GpuCommand::ResourceFlush {
                resource_id: c.resource_id.get(),
                rect: Rect::from(&c.r),
            }
        }
        VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D => {
            let (c, _) = read_struct::<virtio_gpu_transfer_to_host_2d>(
                bytes,
                "virtio_gpu_transfer_to_host_2d",
            )?;
            GpuCommand::TransferToHost2d {
                resource_id: c.resource_id.get(),
                rect: Rect::from(&c.r),
                offset: c.offset.get(),
            }
        }
        VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING => {
            let (c, rest) = read_struct::<virtio_gpu_resource_attach_backing>(
                bytes,
                "virtio_gpu_resource_attach_backing",
            )?;
            GpuCommand::ResourceAttachBacking {
                resource_id: c.resource_id.get(),
                entries: decode_entries(c.nr_entries.get(), rest, limits)?,
            }
        }
        VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING => {
            let (c, _) = read_struct::<virtio_gpu_resource_detach_backing>(
                bytes,
                "virtio_gpu_resource_detach_backing",
            )?;
            GpuCommand::ResourceDetachBacking {
                resource_id: c.resource_id.get(),
            }
        }
        VIRTIO_GPU_CMD_GET_CAPSET_INFO => {
            let (c, _) =
                read_struct::<virtio_gpu_get_capset_info>(bytes, "virtio_gpu_get_capset_info")?;
            GpuCommand::GetCapsetInfo {
                capset_index: c.capset_index.get(),
            }
        }
        VIRTIO_GPU_CMD_GET_CAPSET => {
            let (c, _) = read_struct::<virtio_gpu_get_capset>(bytes, "virtio_gpu_get_capset")?;
            GpuCommand::GetCapset {
                capset_id: c.capset_id.get(),
                capset_version: c.capset_version.get(),
            }
        }
        VIRTIO_GPU_CMD_RESOURCE_ASSIGN_UUID => {
            let (c, _) = read_struct::<virtio_gpu_resource_assign_uuid>(
                bytes,
                "virtio_gpu_resource_assign_uuid",
            )?;
            GpuCommand::ResourceAssignUuid {
                resource_id: c.resource_id.get(),
            }
        }
        VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB => {
            let (c, rest) = read_struct::<virtio_gpu_resource_create_blob>(
                bytes,
                "virtio_gpu_resource_create_blob",
            )?;
            GpuCommand::ResourceCreateBlob {
                resource_id: c.resource_id.get(),
                blob_mem: c.blob_mem.get(),
                blob_flags: c.blob_flags.get(),
                blob_id: c.blob_id.get(),
                size: c.size.get(),
                entries: decode_entries(c.nr_entries.get(), rest, limits)?,
            }
        }
        VIRTIO_GPU_CMD_SET_SCANOUT_BLOB => {
            let (c, _) =
                read_struct::<virtio_gpu_set_scanout_blob>(bytes, "virtio_gpu_set_scanout_blob")?;
            GpuCommand::SetScanoutBlob {
                scanout_id: c.scanout_id.get(),
                resource_id: c.resource_id.get(),
                width: c.width.get(),
                height: c.height.get(),
                format: c.format.get(),
                strides: c.strides.map(|v| v.get()),
                offsets: c.offsets.map(|v| v.get()),
                rect: Rect::from(&c.r),
            }
        }
        VIRTIO_GPU_CMD_UPDATE_CURSOR => {
            let (c, _) =
                read_struct::<virtio_gpu_update_cursor>(bytes, "virtio_gpu_update_cursor")?;
            GpuCommand::UpdateCursor {
                pos: cursor_pos(&c.pos),
                resource_id: c.resource_id.get(),
                hot_x: c.hot_x.get(),
                hot_y: c.hot_y.get(),
            }
        }
        VIRTIO_GPU_CMD_MOVE_CURSOR => {
            let (c, _) =
                read_struct::<virtio_gpu_update_cursor>(bytes, "virtio_gpu_update_cursor")?;
            GpuCommand::MoveCursor {
                pos: cursor_pos(&c.pos),
                resource_id: c.resource_id.get(),
            }
        }
        VIRTIO_GPU_CMD_CTX_CREATE
        | VIRTIO_GPU_CMD_CTX_DESTROY
        | VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE
        | VIRTIO_GPU_CMD_CTX_DETACH_RESOURCE
        | VIRTIO_GPU_CMD_RESOURCE_CREATE_3D
        | VIRTIO_GPU_CMD_TRANSFER_TO_HOST_3D
        | VIRTIO_GPU_CMD_TRANSFER_FROM_HOST_3D
        | VIRTIO_GPU_CMD_SUBMIT_3D
        | VIRTIO_GPU_CMD_RESOURCE_MAP_BLOB
        | VIRTIO_GPU_CMD_RESOURCE_UNMAP_BLOB => {
            return Err(DecodeError::Unsupported { type_: hdr.type_ })
        }
        other => return Err(DecodeError::UnknownCommand { type_: other }),
    };
    Ok((hdr, cmd))
}

fn cursor_pos(p: &virtio_gpu_cursor_pos) -> CursorPos {
    CursorPos {
        scanout_id: p.scanout_id.get(),
        x: p.x.get(),
        y: p.y.get(),
    }
}
