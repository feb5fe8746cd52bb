//! virtio-gpu requests encoded by hand from the virtio spec (5.7.6) and
//! `include/uapi/linux/virtio_gpu.h`, independent of the daemon's own
//! protocol crate so that a layout mistake there cannot hide here.
//!
//! Every encoder returns the exact little-endian bytes a guest driver puts
//! in the readable part of a descriptor chain.

/// `VIRTIO_GPU_CMD_GET_DISPLAY_INFO`
pub const CMD_GET_DISPLAY_INFO: u32 = 0x0100;
/// `VIRTIO_GPU_CMD_RESOURCE_CREATE_2D`
pub const CMD_RESOURCE_CREATE_2D: u32 = 0x0101;
/// `VIRTIO_GPU_CMD_RESOURCE_UNREF`
pub const CMD_RESOURCE_UNREF: u32 = 0x0102;
/// `VIRTIO_GPU_CMD_SET_SCANOUT`
pub const CMD_SET_SCANOUT: u32 = 0x0103;
/// `VIRTIO_GPU_CMD_RESOURCE_FLUSH`
pub const CMD_RESOURCE_FLUSH: u32 = 0x0104;
/// `VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D`
pub const CMD_TRANSFER_TO_HOST_2D: u32 = 0x0105;
/// `VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING`
pub const CMD_RESOURCE_ATTACH_BACKING: u32 = 0x0106;
/// `VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING`
pub const CMD_RESOURCE_DETACH_BACKING: u32 = 0x0107;
/// `VIRTIO_GPU_CMD_GET_CAPSET_INFO`
pub const CMD_GET_CAPSET_INFO: u32 = 0x0108;
/// `VIRTIO_GPU_CMD_GET_CAPSET`
pub const CMD_GET_CAPSET: u32 = 0x0109;
/// `VIRTIO_GPU_CMD_GET_EDID`
pub const CMD_GET_EDID: u32 = 0x010a;
/// `VIRTIO_GPU_CMD_RESOURCE_ASSIGN_UUID`
pub const CMD_RESOURCE_ASSIGN_UUID: u32 = 0x010b;
/// `VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB`
pub const CMD_RESOURCE_CREATE_BLOB: u32 = 0x010c;
/// `VIRTIO_GPU_CMD_SET_SCANOUT_BLOB`
pub const CMD_SET_SCANOUT_BLOB: u32 = 0x010d;
/// `VIRTIO_GPU_CMD_UPDATE_CURSOR`
pub const CMD_UPDATE_CURSOR: u32 = 0x0300;
/// `VIRTIO_GPU_CMD_MOVE_CURSOR`
pub const CMD_MOVE_CURSOR: u32 = 0x0301;

/// `VIRTIO_GPU_RESP_OK_NODATA`
pub const RESP_OK_NODATA: u32 = 0x1100;
/// `VIRTIO_GPU_RESP_OK_DISPLAY_INFO`
pub const RESP_OK_DISPLAY_INFO: u32 = 0x1101;
/// `VIRTIO_GPU_RESP_OK_CAPSET_INFO`
pub const RESP_OK_CAPSET_INFO: u32 = 0x1102;
/// `VIRTIO_GPU_RESP_OK_EDID`
pub const RESP_OK_EDID: u32 = 0x1104;
/// `VIRTIO_GPU_RESP_OK_RESOURCE_UUID`
pub const RESP_OK_RESOURCE_UUID: u32 = 0x1105;
/// `VIRTIO_GPU_RESP_ERR_UNSPEC`
pub const RESP_ERR_UNSPEC: u32 = 0x1200;
/// `VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY`
pub const RESP_ERR_OUT_OF_MEMORY: u32 = 0x1201;
/// `VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID`
pub const RESP_ERR_INVALID_SCANOUT_ID: u32 = 0x1202;
/// `VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID`
pub const RESP_ERR_INVALID_RESOURCE_ID: u32 = 0x1203;
/// `VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER`
pub const RESP_ERR_INVALID_PARAMETER: u32 = 0x1205;

/// `VIRTIO_GPU_FLAG_FENCE`
pub const FLAG_FENCE: u32 = 1;

/// `VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM`
pub const FORMAT_B8G8R8A8_UNORM: u32 = 1;
/// `VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM`
pub const FORMAT_B8G8R8X8_UNORM: u32 = 2;
/// `VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM`
pub const FORMAT_R8G8B8A8_UNORM: u32 = 67;

/// `VIRTIO_GPU_BLOB_MEM_GUEST`
pub const BLOB_MEM_GUEST: u32 = 1;
/// `VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE`
pub const BLOB_FLAG_USE_SHAREABLE: u32 = 2;

/// virtio-gpu device feature bits (virtio spec 5.7.3).
pub const VIRTIO_GPU_F_EDID: u64 = 1 << 1;
/// `VIRTIO_GPU_F_RESOURCE_UUID`
pub const VIRTIO_GPU_F_RESOURCE_UUID: u64 = 1 << 2;
/// `VIRTIO_GPU_F_RESOURCE_BLOB`
pub const VIRTIO_GPU_F_RESOURCE_BLOB: u64 = 1 << 3;

/// Size of `struct virtio_gpu_ctrl_hdr`.
pub const HDR_SIZE: usize = 24;
/// Size of `struct virtio_gpu_mem_entry`.
pub const MEM_ENTRY_SIZE: usize = 16;
/// Size of `struct virtio_gpu_resp_display_info` (16 scanouts).
pub const RESP_DISPLAY_INFO_SIZE: usize = HDR_SIZE + 16 * 24;
/// Size of `struct virtio_gpu_resp_edid`.
pub const RESP_EDID_SIZE: usize = HDR_SIZE + 8 + 1024;

/// Cursor images are always 64x64 pixels of 4 bytes.
pub const CURSOR_SIDE: u32 = 64;

/// A rectangle as in `struct virtio_gpu_rect`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl Rect {
    /// A rectangle at (x, y) with the given size.
    pub const fn new(x: u32, y: u32, width: u32, height: u32) -> Self {
        Self {
            x,
            y,
            width,
            height,
        }
    }
}

/// A guest memory range as in `struct virtio_gpu_mem_entry`.
#[derive(Clone, Copy, Debug)]
pub struct MemEntry {
    /// Guest-physical address.
    pub addr: u64,
    /// Length in bytes.
    pub length: u32,
}

/// Little-endian byte builder.
#[derive(Default)]
struct Enc(Vec<u8>);

impl Enc {
    fn hdr(type_: u32, flags: u32, fence_id: u64, ctx_id: u32) -> Self {
        let mut e = Enc(Vec::with_capacity(64));
        e.u32(type_)
            .u32(flags)
            .u64(fence_id)
            .u32(ctx_id)
            .u8(0)
            .pad(3);
        e
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn pad(&mut self, n: usize) -> &mut Self {
        self.0.resize(self.0.len() + n, 0);
        self
    }
    fn rect(&mut self, r: Rect) -> &mut Self {
        self.u32(r.x).u32(r.y).u32(r.width).u32(r.height)
    }
    fn entries(&mut self, entries: &[MemEntry]) -> &mut Self {
        for e in entries {
            self.u64(e.addr).u32(e.length).u32(0);
        }
        self
    }
    fn done(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

/// A bare `virtio_gpu_ctrl_hdr` with the given command type (also used for
/// GET_DISPLAY_INFO, which has no body, and for unknown command types).
pub fn ctrl_hdr(type_: u32) -> Vec<u8> {
    Enc::hdr(type_, 0, 0, 0).done()
}

/// A header with `VIRTIO_GPU_FLAG_FENCE` set.
pub fn fenced_hdr(type_: u32, fence_id: u64, ctx_id: u32) -> Vec<u8> {
    Enc::hdr(type_, FLAG_FENCE, fence_id, ctx_id).done()
}

/// Replaces the first 24 bytes of `req` with a fenced header of the same type.
pub fn with_fence(mut req: Vec<u8>, fence_id: u64, ctx_id: u32) -> Vec<u8> {
    let type_ = u32::from_le_bytes([req[0], req[1], req[2], req[3]]);
    req[..HDR_SIZE].copy_from_slice(&fenced_hdr(type_, fence_id, ctx_id));
    req
}

/// `VIRTIO_GPU_CMD_GET_DISPLAY_INFO`.
pub fn get_display_info() -> Vec<u8> {
    ctrl_hdr(CMD_GET_DISPLAY_INFO)
}

/// `struct virtio_gpu_cmd_get_edid`.
pub fn get_edid(scanout: u32) -> Vec<u8> {
    Enc::hdr(CMD_GET_EDID, 0, 0, 0).u32(scanout).u32(0).done()
}

/// `struct virtio_gpu_resource_create_2d`.
pub fn resource_create_2d(resource_id: u32, format: u32, width: u32, height: u32) -> Vec<u8> {
    Enc::hdr(CMD_RESOURCE_CREATE_2D, 0, 0, 0)
        .u32(resource_id)
        .u32(format)
        .u32(width)
        .u32(height)
        .done()
}

/// `struct virtio_gpu_resource_unref`.
pub fn resource_unref(resource_id: u32) -> Vec<u8> {
    Enc::hdr(CMD_RESOURCE_UNREF, 0, 0, 0)
        .u32(resource_id)
        .u32(0)
        .done()
}

/// `struct virtio_gpu_set_scanout`.
pub fn set_scanout(scanout_id: u32, resource_id: u32, r: Rect) -> Vec<u8> {
    Enc::hdr(CMD_SET_SCANOUT, 0, 0, 0)
        .rect(r)
        .u32(scanout_id)
        .u32(resource_id)
        .done()
}

/// `struct virtio_gpu_resource_flush`.
pub fn resource_flush(resource_id: u32, r: Rect) -> Vec<u8> {
    Enc::hdr(CMD_RESOURCE_FLUSH, 0, 0, 0)
        .rect(r)
        .u32(resource_id)
        .u32(0)
        .done()
}

/// `struct virtio_gpu_transfer_to_host_2d`.
pub fn transfer_to_host_2d(resource_id: u32, r: Rect, offset: u64) -> Vec<u8> {
    Enc::hdr(CMD_TRANSFER_TO_HOST_2D, 0, 0, 0)
        .rect(r)
        .u64(offset)
        .u32(resource_id)
        .u32(0)
        .done()
}

/// `struct virtio_gpu_resource_attach_backing` followed by its entries.
pub fn attach_backing(resource_id: u32, entries: &[MemEntry]) -> Vec<u8> {
    let nr = u32::try_from(entries.len()).expect("entry count fits u32");
    attach_backing_raw(resource_id, nr, entries)
}

/// ATTACH_BACKING whose `nr_entries` field says `nr_entries` while only
/// `entries` follow (for lying-guest tests).
pub fn attach_backing_raw(resource_id: u32, nr_entries: u32, entries: &[MemEntry]) -> Vec<u8> {
    Enc::hdr(CMD_RESOURCE_ATTACH_BACKING, 0, 0, 0)
        .u32(resource_id)
        .u32(nr_entries)
        .entries(entries)
        .done()
}

/// `struct virtio_gpu_resource_detach_backing`.
pub fn detach_backing(resource_id: u32) -> Vec<u8> {
    Enc::hdr(CMD_RESOURCE_DETACH_BACKING, 0, 0, 0)
        .u32(resource_id)
        .u32(0)
        .done()
}

/// `struct virtio_gpu_get_capset_info`.
pub fn get_capset_info(index: u32) -> Vec<u8> {
    Enc::hdr(CMD_GET_CAPSET_INFO, 0, 0, 0)
        .u32(index)
        .u32(0)
        .done()
}

/// `struct virtio_gpu_get_capset`.
pub fn get_capset(capset_id: u32, version: u32) -> Vec<u8> {
    Enc::hdr(CMD_GET_CAPSET, 0, 0, 0)
        .u32(capset_id)
        .u32(version)
        .done()
}

/// `struct virtio_gpu_resource_assign_uuid`.
pub fn resource_assign_uuid(resource_id: u32) -> Vec<u8> {
    Enc::hdr(CMD_RESOURCE_ASSIGN_UUID, 0, 0, 0)
        .u32(resource_id)
        .u32(0)
        .done()
}

/// `struct virtio_gpu_resource_create_blob` followed by its entries.
pub fn resource_create_blob(
    resource_id: u32,
    blob_mem: u32,
    blob_flags: u32,
    size: u64,
    entries: &[MemEntry],
) -> Vec<u8> {
    let nr = u32::try_from(entries.len()).expect("entry count fits u32");
    Enc::hdr(CMD_RESOURCE_CREATE_BLOB, 0, 0, 0)
        .u32(resource_id)
        .u32(blob_mem)
        .u32(blob_flags)
        .u32(nr)
        .u64(0)
        .u64(size)
        .entries(entries)
        .done()
}

/// `struct virtio_gpu_set_scanout_blob` for a single-plane format.
pub fn set_scanout_blob(
    scanout_id: u32,
    resource_id: u32,
    r: Rect,
    (width, height, format, stride): (u32, u32, u32, u32),
) -> Vec<u8> {
    Enc::hdr(CMD_SET_SCANOUT_BLOB, 0, 0, 0)
        .rect(r)
        .u32(scanout_id)
        .u32(resource_id)
        .u32(width)
        .u32(height)
        .u32(format)
        .u32(0)
        .u32(stride)
        .pad(12)
        .u32(0)
        .pad(12)
        .done()
}

/// Like [`set_scanout_blob`] with plane 0 starting `offset` bytes into the
/// blob (`offsets[0]`, byte 80 of the struct).
pub fn set_scanout_blob_at(
    scanout_id: u32,
    resource_id: u32,
    r: Rect,
    layout: (u32, u32, u32, u32),
    offset: u32,
) -> Vec<u8> {
    let mut req = set_scanout_blob(scanout_id, resource_id, r, layout);
    req[80..84].copy_from_slice(&offset.to_le_bytes());
    req
}

/// `struct virtio_gpu_update_cursor` with `VIRTIO_GPU_CMD_UPDATE_CURSOR`.
pub fn update_cursor(
    scanout_id: u32,
    x: u32,
    y: u32,
    resource_id: u32,
    hot: (u32, u32),
) -> Vec<u8> {
    cursor_cmd(CMD_UPDATE_CURSOR, scanout_id, x, y, resource_id, hot)
}

/// `struct virtio_gpu_update_cursor` with `VIRTIO_GPU_CMD_MOVE_CURSOR`
/// (Linux keeps the current cursor resource id in it; 0 hides the cursor).
pub fn move_cursor(scanout_id: u32, x: u32, y: u32, resource_id: u32) -> Vec<u8> {
    cursor_cmd(CMD_MOVE_CURSOR, scanout_id, x, y, resource_id, (0, 0))
}

fn cursor_cmd(
    type_: u32,
    scanout_id: u32,
    x: u32,
    y: u32,
    resource_id: u32,
    hot: (u32, u32),
) -> Vec<u8> {
    Enc::hdr(type_, 0, 0, 0)
        .u32(scanout_id)
        .u32(x)
        .u32(y)
        .u32(0)
        .u32(resource_id)
        .u32(hot.0)
        .u32(hot.1)
        .u32(0)
        .done()
}

/// Reads a little-endian u32 at `off` (panics if out of range: test data).
pub fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

/// Reads a little-endian u64 at `off`.
pub fn le64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}
