//! The virtio-gpu wire protocol (control queue and cursor queue), without
//! any I/O, so that it can be unit-tested and fuzzed on its own.
//!
//! - [`wire`]: `#[repr(C)]` little-endian layouts named as in Linux's
//!   `include/uapi/linux/virtio_gpu.h`, and the protocol constants.
//! - [`decode_command`]: guest bytes → ([`CtrlHeader`], [`GpuCommand`]),
//!   bounded by [`DecodeLimits`]; failures are [`DecodeError`]s that map to
//!   a guest response code with [`DecodeError::error_code`].
//! - [`GpuResponse::encode`]: response → bytes, echoing the request's fence.
//! - [`wire::virtio_gpu_config`] helpers for `GET_CONFIG` / `SET_CONFIG`.
//! - [`edid::generate_edid`]: a 128-byte EDID 1.4 block for GET_EDID.
//!
//! Metric names used by the daemon come from [`GpuCommand::name`] /
//! [`command_name`] and [`ErrorCode::name`].
//!
//! ```
//! use vugpu_protocol::{decode_command, CtrlHeader, DecodeLimits, GpuCommand, GpuResponse};
//!
//! let hdr = CtrlHeader { flags: vugpu_protocol::wire::VIRTIO_GPU_FLAG_FENCE, fence_id: 9, ..Default::default() };
//! let request = GpuCommand::ResourceDetachBacking { resource_id: 3 }.to_bytes(&hdr);
//!
//! let (req_hdr, cmd) = decode_command(&request, &DecodeLimits::default()).expect("valid request");
//! assert_eq!(cmd, GpuCommand::ResourceDetachBacking { resource_id: 3 });
//!
//! let mut out = [0u8; 24];
//! let n = GpuResponse::OkNoData.encode(&req_hdr, &mut out).expect("room for a header");
//! assert_eq!(n, 24);
//! assert_eq!(vugpu_protocol::decode_header(&out).expect("header").fence_id, 9);
//! ```

pub mod command;
pub mod config;
pub mod edid;
pub mod response;
pub mod wire;

pub use command::{
    command_c_name, command_name, decode_attach_backing_in_place, decode_command, decode_header,
    max_command_len, CtrlHeader, CursorPos, DecodeError, DecodeLimits, GpuCommand, MemEntry, Rect,
    COMMAND_NAMES, DEFAULT_MAX_BACKING_ENTRIES, UNKNOWN_COMMAND_NAME,
};
pub use edid::{generate_edid, EdidError};
pub use response::{response_header, DisplayOne, EncodeError, ErrorCode, GpuResponse};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod property_tests;
