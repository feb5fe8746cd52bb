//! The test-only read digest log (`--test-only-read-digest-log PATH`).
//!
//! Every time the device reads guest backing of a resource for
//! TRANSFER_TO_HOST_2D, or for RESOURCE_FLUSH / SET_SCANOUT_BLOB of a blob
//! scanout, one JSON line is appended:
//!
//! ```text
//! {"resource_id":R,"op":"transfer"|"flush"|"scanout","x":X,"y":Y,"w":W,"h":H,"fnv1a64":"<16 lowercase hex>"}
//! ```
//!
//! The digest is 64-bit FNV-1a (offset basis `0xcbf29ce484222325`, prime
//! `0x100000001b3`) over the rectangle's bytes exactly as read from guest
//! memory: rows `y..y+h` top to bottom, `w * 4` bytes each.
//!
//! - Transfer: row `i` (0-based) is read at backing offset
//!   `offset + i * stride` with `stride = resource width * 4` (QEMU and Linux
//!   semantics: `offset` is where the rectangle's first pixel is; Linux sends
//!   `y * stride + x * 4`, so row `y + i` is at `(y + i) * stride + x * 4`).
//!   The bytes digested are the ones the state copied into its host copy
//!   by that transfer (read back from it), so a stale or wrong backing range
//!   changes the digest.
//! - Blob flush / scanout: row `r` in `y..y+h` is read at blob offset
//!   `plane offset + r * stride + x * 4` with the scanout's stride; the rect
//!   is the part of the scanout the flush covers (or the whole scanout rect
//!   for SET_SCANOUT_BLOB), in image coordinates.
//!
//! A harness computes the same digest over its own pattern and compares.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// FNV-1a 64-bit offset basis.
pub const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
pub const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// A streaming 64-bit FNV-1a hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fnv1a64(u64);

impl Default for Fnv1a64 {
    fn default() -> Self {
        Self(FNV_OFFSET_BASIS)
    }
}

impl Fnv1a64 {
    /// Feeds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(FNV_PRIME);
        }
        self.0 = h;
    }

    /// The hash so far.
    pub fn value(&self) -> u64 {
        self.0
    }
}

/// What the device read the backing for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOp {
    /// TRANSFER_TO_HOST_2D.
    Transfer,
    /// RESOURCE_FLUSH of a blob scanout.
    Flush,
    /// SET_SCANOUT_BLOB.
    Scanout,
}

impl ReadOp {
    /// The `op` value in the log.
    pub fn name(self) -> &'static str {
        match self {
            Self::Transfer => "transfer",
            Self::Flush => "flush",
            Self::Scanout => "scanout",
        }
    }
}

/// One log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRecord {
    /// Resource read.
    pub resource_id: u32,
    /// Why.
    pub op: ReadOp,
    /// Rectangle x.
    pub x: u32,
    /// Rectangle y.
    pub y: u32,
    /// Rectangle width.
    pub w: u32,
    /// Rectangle height.
    pub h: u32,
    /// FNV-1a 64 of the bytes read.
    pub digest: u64,
}

impl ReadRecord {
    /// The JSON line, without the newline.
    pub fn json(&self) -> String {
        format!(
            r#"{{"resource_id":{},"op":"{}","x":{},"y":{},"w":{},"h":{},"fnv1a64":"{:016x}"}}"#,
            self.resource_id,
            self.op.name(),
            self.x,
            self.y,
            self.w,
            self.h,
            self.digest
        )
    }
}

/// The open log file.
#[derive(Debug)]
pub struct DigestLog {
    file: File,
}

impl DigestLog {
    /// Opens (creates, appends to) the log at `path`.
    ///
    /// # Errors
    /// The open error.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { file })
    }

    /// Appends `record` as one line (one write, so lines never interleave).
    ///
    /// # Errors
    /// The write error.
    pub fn append(&mut self, record: &ReadRecord) -> io::Result<()> {
        let mut line = record.json();
        line.push('\n');
        self.file.write_all(line.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_fnv1a64_matches_reference_vectors() {
        let mut empty = Fnv1a64::default();
        empty.update(b"");
        let mut a = Fnv1a64::default();
        a.update(b"a");
        let mut foobar = Fnv1a64::default();
        foobar.update(b"foo");
        foobar.update(b"bar");

        assert_eq!(empty.value(), 0xcbf2_9ce4_8422_2325);
        assert_eq!(a.value(), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(foobar.value(), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn test_read_record_json_is_one_line_with_16_hex_digits() {
        let record = ReadRecord {
            resource_id: 7,
            op: ReadOp::Flush,
            x: 1,
            y: 2,
            w: 3,
            h: 4,
            digest: 0xab,
        };

        assert_eq!(
            record.json(),
            r#"{"resource_id":7,"op":"flush","x":1,"y":2,"w":3,"h":4,"fnv1a64":"00000000000000ab"}"#
        );
    }
}
