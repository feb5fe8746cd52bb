//! Control-queue responses: [`GpuResponse`] and its encoding.
//!
//! The cursor queue has no responses: its buffers are device-readable only
//! and are simply returned to the used ring.

use std::mem::size_of;

use zerocopy::IntoBytes;

use crate::command::{CtrlHeader, Rect};
use crate::wire::*;

/// Error response codes (`VIRTIO_GPU_RESP_ERR_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ErrorCode {
    /// `VIRTIO_GPU_RESP_ERR_UNSPEC`.
    Unspec = VIRTIO_GPU_RESP_ERR_UNSPEC,
    /// `VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY`.
    OutOfMemory = VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY,
    /// `VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID`.
    InvalidScanoutId = VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID,
    /// `VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID`.
    InvalidResourceId = VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID,
    /// `VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID`.
    InvalidContextId = VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID,
    /// `VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER`.
    InvalidParameter = VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
}

impl ErrorCode {
    /// Every error code, in numeric order (to pre-register metrics).
    pub const ALL: [ErrorCode; 6] = [
        ErrorCode::Unspec,
        ErrorCode::OutOfMemory,
        ErrorCode::InvalidScanoutId,
        ErrorCode::InvalidResourceId,
        ErrorCode::InvalidContextId,
        ErrorCode::InvalidParameter,
    ];

    /// Metric name (`vugpu_command_errors_total{code=...}`).
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::Unspec => "err_unspec",
            ErrorCode::OutOfMemory => "err_out_of_memory",
            ErrorCode::InvalidScanoutId => "err_invalid_scanout_id",
            ErrorCode::InvalidResourceId => "err_invalid_resource_id",
            ErrorCode::InvalidContextId => "err_invalid_context_id",
            ErrorCode::InvalidParameter => "err_invalid_parameter",
        }
    }

    /// The `VIRTIO_GPU_RESP_ERR_*` value.
    pub fn response_type(self) -> u32 {
        self as u32
    }

    /// The code for a `VIRTIO_GPU_RESP_ERR_*` value, `None` for others.
    pub fn from_response_type(type_: u32) -> Option<ErrorCode> {
        ErrorCode::ALL
            .into_iter()
            .find(|c| c.response_type() == type_)
    }
}

/// One scanout of a display-info response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DisplayOne {
    /// Preferred position and size.
    pub rect: Rect,
    /// Whether the output is enabled.
    pub enabled: bool,
    /// Reserved flags (0).
    pub flags: u32,
}

/// A control-queue response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GpuResponse {
    /// `VIRTIO_GPU_RESP_OK_NODATA`.
    OkNoData,
    /// `VIRTIO_GPU_RESP_OK_DISPLAY_INFO`: up to 16 scanouts; missing ones
    /// are sent as disabled, all-zero entries.
    OkDisplayInfo(Vec<DisplayOne>),
    /// `VIRTIO_GPU_RESP_OK_EDID`: up to 1024 bytes of EDID.
    OkEdid(Vec<u8>),
    /// `VIRTIO_GPU_RESP_OK_CAPSET_INFO`.
    OkCapsetInfo {
        /// Capset id.
        capset_id: u32,
        /// Highest version.
        max_version: u32,
        /// Largest size.
        max_size: u32,
    },
    /// `VIRTIO_GPU_RESP_OK_CAPSET`: the capset bytes.
    OkCapset(Vec<u8>),
    /// `VIRTIO_GPU_RESP_OK_RESOURCE_UUID`.
    OkResourceUuid([u8; 16]),
    /// `VIRTIO_GPU_RESP_ERR_*`.
    Err(ErrorCode),
}

impl From<ErrorCode> for GpuResponse {
    fn from(code: ErrorCode) -> Self {
        GpuResponse::Err(code)
    }
}

/// Why a response could not be encoded. All of these are host-side faults:
/// the caller should fall back to an `ERR_UNSPEC` header (see
/// [`GpuResponse::encode_or_unspec`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The device-writable part of the chain is too small.
    #[error("response needs {need} bytes, the writable buffer has {have}")]
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// More EDID bytes than `virtio_gpu_resp_edid` holds.
    #[error("EDID of {len} bytes exceeds the {VIRTIO_GPU_EDID_MAX_SIZE}-byte response field")]
    EdidTooLarge {
        /// EDID length.
        len: usize,
    },
    /// More scanouts than `VIRTIO_GPU_MAX_SCANOUTS`.
    #[error("{count} scanouts exceed the maximum of {VIRTIO_GPU_MAX_SCANOUTS}")]
    TooManyScanouts {
        /// Scanouts given.
        count: usize,
    },
}

/// The response header for request `req` with response type `type_`.
///
/// Echoes `VIRTIO_GPU_FLAG_FENCE`, `fence_id` and `ctx_id` when the request
/// was fenced (as QEMU does), and `VIRTIO_GPU_FLAG_INFO_RING_IDX` with
/// `ring_idx` when the request carried that flag. Everything else is zero.
pub fn response_header(req: &CtrlHeader, type_: u32) -> virtio_gpu_ctrl_hdr {
    let mut hdr = virtio_gpu_ctrl_hdr {
        type_: type_.into(),
        ..Default::default()
    };
    let mut flags = 0;
    if req.is_fenced() {
        flags |= VIRTIO_GPU_FLAG_FENCE;
        hdr.fence_id = req.fence_id.into();
        hdr.ctx_id = req.ctx_id.into();
    }
    if req.has_ring_idx() {
        flags |= VIRTIO_GPU_FLAG_INFO_RING_IDX;
        hdr.ring_idx = req.ring_idx;
    }
    hdr.flags = flags.into();
    hdr
}

impl GpuResponse {
    /// The `VIRTIO_GPU_RESP_*` type of this response.
    pub fn response_type(&self) -> u32 {
        match self {
            GpuResponse::OkNoData => VIRTIO_GPU_RESP_OK_NODATA,
            GpuResponse::OkDisplayInfo(_) => VIRTIO_GPU_RESP_OK_DISPLAY_INFO,
            GpuResponse::OkEdid(_) => VIRTIO_GPU_RESP_OK_EDID,
            GpuResponse::OkCapsetInfo { .. } => VIRTIO_GPU_RESP_OK_CAPSET_INFO,
            GpuResponse::OkCapset(_) => VIRTIO_GPU_RESP_OK_CAPSET,
            GpuResponse::OkResourceUuid(_) => VIRTIO_GPU_RESP_OK_RESOURCE_UUID,
            GpuResponse::Err(code) => code.response_type(),
        }
    }

    /// The error code, if this is an error response.
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            GpuResponse::Err(code) => Some(*code),
            _ => None,
        }
    }

    /// Bytes [`GpuResponse::encode`] writes. Display info and EDID are
    /// always sent as their full fixed-size structs (408 and 1056 bytes),
    /// as the Linux driver expects.
    pub fn encoded_len(&self) -> usize {
        match self {
            GpuResponse::OkNoData | GpuResponse::Err(_) => size_of::<virtio_gpu_ctrl_hdr>(),
            GpuResponse::OkDisplayInfo(_) => size_of::<virtio_gpu_resp_display_info>(),
            GpuResponse::OkEdid(_) => size_of::<virtio_gpu_resp_edid>(),
            GpuResponse::OkCapsetInfo { .. } => size_of::<virtio_gpu_resp_capset_info>(),
            GpuResponse::OkCapset(data) => size_of::<virtio_gpu_resp_capset>() + data.len(),
            GpuResponse::OkResourceUuid(_) => size_of::<virtio_gpu_resp_resource_uuid>(),
        }
    }

    /// Encodes the response to request `req` into the start of `out`,
    /// returning the number of bytes written ([`GpuResponse::encoded_len`]).
    /// Nothing is written on error.
    ///
    /// # Errors
    ///
    /// - [`EncodeError::BufferTooSmall`] if `out` is shorter than
    ///   [`GpuResponse::encoded_len`].
    /// - [`EncodeError::TooManyScanouts`] / [`EncodeError::EdidTooLarge`]
    ///   if the payload does not fit the wire struct.
    pub fn encode(&self, req: &CtrlHeader, out: &mut [u8]) -> Result<usize, EncodeError> {
        let need = self.encoded_len();
        if out.len() < need {
            return Err(EncodeError::BufferTooSmall {
                need,
                have: out.len(),
            });
        }
        let hdr = response_header(req, self.response_type());
        let out = &mut out[..need];
        match self {
            GpuResponse::OkNoData | GpuResponse::Err(_) => out.copy_from_slice(hdr.as_bytes()),
            GpuResponse::OkDisplayInfo(displays) => {
                if displays.len() > VIRTIO_GPU_MAX_SCANOUTS {
                    return Err(EncodeError::TooManyScanouts {
                        count: displays.len(),
                    });
                }
                let mut resp = virtio_gpu_resp_display_info {
                    hdr,
                    ..Default::default()
                };
                for (slot, d) in resp.pmodes.iter_mut().zip(displays) {
                    *slot = virtio_gpu_display_one {
                        r: d.rect.to_wire(),
                        enabled: u32::from(d.enabled).into(),
                        flags: d.flags.into(),
                    };
                }
                out.copy_from_slice(resp.as_bytes());
            }
            GpuResponse::OkEdid(edid) => {
                if edid.len() > VIRTIO_GPU_EDID_MAX_SIZE {
                    return Err(EncodeError::EdidTooLarge { len: edid.len() });
                }
                let mut resp = virtio_gpu_resp_edid {
                    hdr,
                    // Bounded by VIRTIO_GPU_EDID_MAX_SIZE just above.
                    size: (edid.len() as u32).into(),
                    padding: 0.into(),
                    edid: [0; VIRTIO_GPU_EDID_MAX_SIZE],
                };
                resp.edid[..edid.len()].copy_from_slice(edid);
                out.copy_from_slice(resp.as_bytes());
            }
            GpuResponse::OkCapsetInfo {
                capset_id,
                max_version,
                max_size,
            } => {
                let resp = virtio_gpu_resp_capset_info {
                    hdr,
                    capset_id: (*capset_id).into(),
                    capset_max_version: (*max_version).into(),
                    capset_max_size: (*max_size).into(),
                    padding: 0.into(),
                };
                out.copy_from_slice(resp.as_bytes());
            }
            GpuResponse::OkCapset(data) => {
                let (head, tail) = out.split_at_mut(size_of::<virtio_gpu_resp_capset>());
                head.copy_from_slice(virtio_gpu_resp_capset { hdr }.as_bytes());
                tail.copy_from_slice(data);
            }
            GpuResponse::OkResourceUuid(uuid) => {
                let resp = virtio_gpu_resp_resource_uuid { hdr, uuid: *uuid };
                out.copy_from_slice(resp.as_bytes());
            }
        }
        Ok(need)
    }

    /// Encodes the response, or, if that fails (buffer too small, payload
    /// too large), an `ERR_UNSPEC` header when `out` has room for one, so
    /// the driver always sees a response when it can. Returns the bytes
    /// written and the response type actually sent.
    ///
    /// # Errors
    ///
    /// [`EncodeError::BufferTooSmall`] when `out` cannot even hold a
    /// 24-byte header; the original error otherwise is not returned.
    pub fn encode_or_unspec(
        &self,
        req: &CtrlHeader,
        out: &mut [u8],
    ) -> Result<(usize, u32), EncodeError> {
        match self.encode(req, out) {
            Ok(n) => Ok((n, self.response_type())),
            Err(_) => {
                let fallback = GpuResponse::Err(ErrorCode::Unspec);
                let n = fallback.encode(req, out)?;
                Ok((n, fallback.response_type()))
            }
        }
    }
}
