//! The vhost-user-gpu display socket (`VHOST_USER_GPU_SET_SOCKET`).
//!
//! QEMU's `vhost-user-gpu-pci` hands the backend a second unix socket over
//! which the backend *sends* display traffic: scanout geometry, pixel
//! updates and cursor changes, and *asks* for the preferred display
//! configuration and EDID. [`Display`] wraps that socket for the worker
//! thread.
//!
//! The protocol handshake (GET/SET_PROTOCOL_FEATURES) and every request that
//! waits for a reply run on the worker thread, never on the vhost-user
//! frontend thread: QEMU answers display requests from its main loop, which
//! may itself be waiting for a vhost-user reply, so blocking the frontend
//! thread on a display reply could deadlock both processes.
//!
//! Errors are returned as [`DisplayError`]; the caller logs them, drops the
//! socket and continues headless (see [`crate::device`]).

use std::io;

use vhost::vhost_user::gpu_message::{
    VhostUserGpuCursorPos, VhostUserGpuCursorUpdate, VhostUserGpuEdidRequest, VhostUserGpuScanout,
    VhostUserGpuUpdate,
};
use vhost::vhost_user::message::VhostUserU64;
use vhost::vhost_user::GpuBackend;
use vugpu_protocol::{DisplayOne, Rect};

/// `VHOST_USER_GPU_PROTOCOL_F_EDID` as a bit mask (vhost 0.18 defines the
/// flag as the bit *number* 0, which cannot be tested as a mask).
const PROTOCOL_F_EDID: u64 = 1 << 0;

/// Cursor images are always 64x64 pixels of 4 bytes.
pub const CURSOR_BYTES: usize = 4 * 64 * 64;

/// Largest pixel payload of one `VHOST_USER_GPU_UPDATE` message; larger
/// rectangles are sent as several messages of whole rows.
const MAX_UPDATE_PAYLOAD: usize = 1 << 20;

/// A failed exchange on the display socket.
#[derive(Debug, thiserror::Error)]
#[error("Display socket {what} failed")]
pub struct DisplayError {
    /// The message being exchanged.
    what: &'static str,
    /// Cause reported by the socket.
    #[source]
    source: io::Error,
}

fn err(what: &'static str) -> impl FnOnce(io::Error) -> DisplayError {
    move |source| DisplayError { what, source }
}

/// The frontend's display, reached through the display socket.
pub struct Display {
    socket: GpuBackend,
    edid: bool,
}

impl std::fmt::Debug for Display {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Display")
            .field("edid", &self.edid)
            .finish_non_exhaustive()
    }
}

impl Display {
    /// Performs the protocol handshake: asks the frontend for its protocol
    /// features and enables EDID when it offers it.
    ///
    /// # Errors
    /// A [`DisplayError`] when the frontend does not answer.
    pub fn connect(socket: GpuBackend) -> Result<Self, DisplayError> {
        let offered = socket
            .get_protocol_features()
            .map_err(err("GET_PROTOCOL_FEATURES"))?
            .value;
        let wanted = offered & PROTOCOL_F_EDID;
        socket
            .set_protocol_features(&VhostUserU64::new(wanted))
            .map_err(err("SET_PROTOCOL_FEATURES"))?;
        Ok(Self {
            socket,
            edid: wanted & PROTOCOL_F_EDID != 0,
        })
    }

    /// Whether the frontend can provide EDID blobs.
    pub fn has_edid(&self) -> bool {
        self.edid
    }

    /// The frontend's preferred display configuration.
    ///
    /// # Errors
    /// A [`DisplayError`] when the exchange fails.
    pub fn display_info(&self) -> Result<Vec<DisplayOne>, DisplayError> {
        let info = self
            .socket
            .get_display_info()
            .map_err(err("GET_DISPLAY_INFO"))?;
        Ok(info
            .pmodes
            .iter()
            .map(|m| DisplayOne {
                rect: Rect {
                    x: m.r.x,
                    y: m.r.y,
                    width: m.r.width,
                    height: m.r.height,
                },
                enabled: m.enabled != 0,
                flags: m.flags,
            })
            .collect())
    }

    /// The frontend's EDID for `scanout_id`, `None` when it offers no EDID.
    ///
    /// # Errors
    /// A [`DisplayError`] when the exchange fails.
    pub fn edid(&self, scanout_id: u32) -> Result<Option<Vec<u8>>, DisplayError> {
        if !self.edid {
            return Ok(None);
        }
        let resp = self
            .socket
            .get_edid(&VhostUserGpuEdidRequest { scanout_id })
            .map_err(err("GET_EDID"))?;
        let len = usize::try_from(resp.size)
            .unwrap_or(usize::MAX)
            .min(resp.edid.len());
        Ok(Some(resp.edid[..len].to_vec()))
    }

    /// Sets the geometry of a scanout; 0x0 disables it.
    ///
    /// # Errors
    /// A [`DisplayError`] when the send fails.
    pub fn set_scanout(
        &self,
        scanout_id: u32,
        width: u32,
        height: u32,
    ) -> Result<(), DisplayError> {
        self.socket
            .set_scanout(&VhostUserGpuScanout {
                scanout_id,
                width,
                height,
            })
            .map_err(err("SCANOUT"))
    }

    /// Sends the pixels of `rect` (x8r8g8b8, `rect.width * 4` bytes per
    /// row, rows packed) for `scanout_id`, split into messages of at most
    /// `MAX_UPDATE_PAYLOAD` bytes.
    ///
    /// # Errors
    /// A [`DisplayError`] when a send fails.
    pub fn update(&self, scanout_id: u32, rect: Rect, pixels: &[u8]) -> Result<(), DisplayError> {
        let stride = usize::try_from(rect.width)
            .unwrap_or(usize::MAX)
            .saturating_mul(4);
        if stride == 0 || rect.height == 0 {
            return Ok(());
        }
        let rows_per_msg = (MAX_UPDATE_PAYLOAD / stride).max(1);
        for (i, chunk) in pixels.chunks(rows_per_msg * stride).enumerate() {
            let first_row = i.saturating_mul(rows_per_msg);
            let rows = chunk.len() / stride;
            if rows == 0 {
                break;
            }
            let update = VhostUserGpuUpdate {
                scanout_id,
                x: rect.x,
                y: rect
                    .y
                    .saturating_add(u32::try_from(first_row).unwrap_or(u32::MAX)),
                width: rect.width,
                height: u32::try_from(rows).unwrap_or(u32::MAX),
            };
            self.socket
                .update_scanout(&update, &chunk[..rows * stride])
                .map_err(err("UPDATE"))?;
        }
        Ok(())
    }

    /// Shows `image` (64x64 x8r8g8b8 with alpha) as the cursor at `pos`.
    ///
    /// # Errors
    /// A [`DisplayError`] when the send fails.
    pub fn cursor_update(
        &self,
        scanout_id: u32,
        x: u32,
        y: u32,
        hot_x: u32,
        hot_y: u32,
        image: &[u8; CURSOR_BYTES],
    ) -> Result<(), DisplayError> {
        let update = VhostUserGpuCursorUpdate {
            pos: VhostUserGpuCursorPos { scanout_id, x, y },
            hot_x,
            hot_y,
        };
        self.socket
            .cursor_update(&update, image)
            .map_err(err("CURSOR_UPDATE"))
    }

    /// Moves the cursor.
    ///
    /// # Errors
    /// A [`DisplayError`] when the send fails.
    pub fn cursor_pos(&self, scanout_id: u32, x: u32, y: u32) -> Result<(), DisplayError> {
        self.socket
            .cursor_pos(&VhostUserGpuCursorPos { scanout_id, x, y })
            .map_err(err("CURSOR_POS"))
    }

    /// Hides the cursor.
    ///
    /// # Errors
    /// A [`DisplayError`] when the send fails.
    pub fn cursor_hide(&self, scanout_id: u32, x: u32, y: u32) -> Result<(), DisplayError> {
        self.socket
            .cursor_pos_hide(&VhostUserGpuCursorPos { scanout_id, x, y })
            .map_err(err("CURSOR_POS_HIDE"))
    }
}
