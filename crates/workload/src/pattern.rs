//! Deterministic object content: every 64-bit word is a function of
//! (seed, object index, word index), so any byte can be checked later without
//! keeping a copy, and a page that comes back at the wrong offset, in the wrong
//! object, zeroed or stale is detected.

/// Maximum number of mismatch offsets remembered per verification.
pub const MAX_REPORTED_OFFSETS: usize = 4;

/// splitmix64 finalizer: a cheap bijective 64-bit mix.
#[inline]
fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The content of word `index` (byte offset `index * 8`) of object `object`.
#[inline]
pub fn word(seed: u64, object: u64, index: u64) -> u64 {
    // Distinct odd multipliers keep (object, index) pairs apart before the mix.
    mix64(
        seed.wrapping_mul(0xd6e8_feb8_6659_fd93)
            ^ object.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ index.wrapping_mul(0xc2b2_ae3d_27d4_eb4f),
    )
}

/// Fills `words` (starting at word 0 of the object) with the object's content.
pub fn fill(words: &mut [u64], seed: u64, object: u64) {
    for (index, w) in (0u64..).zip(words.iter_mut()) {
        *w = word(seed, object, index);
    }
}

/// FNV-1a 64 offset basis.
pub const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64 prime.
pub const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Feeds `bytes` into an FNV-1a 64 state.
pub fn fnv1a64_update(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// A rectangle of an object seen as rows of `stride` bytes: `w * 4` bytes
/// per row at byte `row * stride + x * 4`, rows `y..y + h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Origin x, in 4-byte pixels.
    pub x: u32,
    /// Origin y, in rows.
    pub y: u32,
    /// Width, in 4-byte pixels.
    pub w: u32,
    /// Height, in rows.
    pub h: u32,
    /// Bytes per row.
    pub stride: u32,
}

/// The FNV-1a 64 digest of `rect` of object `object` as [`fill`] writes it,
/// computed from the pattern alone (no memory is read): what a device that
/// reads the rectangle from the right pages must find. Word `i` occupies
/// bytes `8 * i .. 8 * i + 8`, little-endian.
pub fn rect_digest(seed: u64, object: u64, rect: Rect) -> u64 {
    let mut hash = FNV_OFFSET_BASIS;
    let row_bytes = u64::from(rect.w) * 4;
    for row in u64::from(rect.y)..u64::from(rect.y) + u64::from(rect.h) {
        let start = row * u64::from(rect.stride) + u64::from(rect.x) * 4;
        let end = start + row_bytes;
        let mut off = start;
        while off < end {
            let index = off / 8;
            let bytes = word(seed, object, index).to_le_bytes();
            let from = usize::try_from(off % 8).unwrap_or(0);
            let to = usize::try_from((end - index * 8).min(8)).unwrap_or(8);
            hash = fnv1a64_update(hash, &bytes[from..to]);
            off = index * 8 + 8;
        }
    }
    hash
}

/// Result of checking an object's content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verification {
    /// Bytes compared.
    pub checked_bytes: u64,
    /// Bytes that differ from the expected content.
    pub mismatched_bytes: u64,
    /// Byte offsets (within the object) of the first mismatching bytes, at most
    /// [`MAX_REPORTED_OFFSETS`], in increasing order.
    pub first_offsets: Vec<u64>,
    /// What the first mismatching word held (`found`, `expected`).
    pub first_word: Option<(u64, u64)>,
}

/// Checks `words` (starting at word 0 of the object) against the content
/// [`fill`] would have written.
pub fn verify(words: &[u64], seed: u64, object: u64) -> Verification {
    let mut v = Verification::default();
    for (index, &found) in (0u64..).zip(words.iter()) {
        let expected = word(seed, object, index);
        let diff = found ^ expected;
        if diff != 0 {
            // Count differing bytes; x86_64 is little-endian, so byte k of the
            // word lives at offset index * 8 + k.
            for k in 0..8u64 {
                if (diff >> (k * 8)) & 0xff != 0 {
                    v.mismatched_bytes += 1;
                    if v.first_offsets.len() < MAX_REPORTED_OFFSETS {
                        v.first_offsets.push(index * 8 + k);
                    }
                }
            }
            if v.first_word.is_none() {
                v.first_word = Some((found, expected));
            }
        }
    }
    v.checked_bytes = (words.len() as u64) * 8;
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_verify_after_fill_reports_no_mismatch() {
        let mut buf = vec![0u64; 512];
        fill(&mut buf, 7, 3);

        let v = verify(&buf, 7, 3);

        assert_eq!(v.checked_bytes, 4096);
        assert_eq!(v.mismatched_bytes, 0);
        assert!(v.first_offsets.is_empty());
    }

    #[test]
    fn test_verify_single_corrupt_byte_reports_its_offset() {
        let mut buf = vec![0u64; 512];
        fill(&mut buf, 7, 3);
        // Flip byte 2 of word 100: object offset 802.
        buf[100] ^= 0xff << 16;

        let v = verify(&buf, 7, 3);

        assert_eq!(v.mismatched_bytes, 1);
        assert_eq!(v.first_offsets, vec![802]);
    }

    #[test]
    fn test_verify_zeroed_page_counts_every_byte() {
        let mut buf = vec![0u64; 1024];
        fill(&mut buf, 1, 0);
        buf[512..].fill(0);

        let v = verify(&buf, 1, 0);

        // A word of the pattern is zero in a given byte with probability 1/256,
        // so nearly all 4096 bytes of the zeroed page must differ.
        assert!(v.mismatched_bytes > 4000, "{}", v.mismatched_bytes);
        assert_eq!(v.first_offsets.len(), MAX_REPORTED_OFFSETS);
        assert!(v.first_offsets[0] >= 4096);
    }

    #[test]
    fn test_verify_content_of_other_object_mismatches() {
        let mut buf = vec![0u64; 512];
        fill(&mut buf, 7, 4);

        let v = verify(&buf, 7, 3);

        assert!(v.mismatched_bytes > 4000);
    }

    #[test]
    fn test_fnv1a64_known_vectors() {
        // Reference values of the FNV-1a 64 test suite.
        assert_eq!(fnv1a64_update(FNV_OFFSET_BASIS, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(
            fnv1a64_update(FNV_OFFSET_BASIS, b"a"),
            0xaf63_dc4c_8601_ec8c
        );
        assert_eq!(
            fnv1a64_update(FNV_OFFSET_BASIS, b"foobar"),
            0x8594_4171_f739_67e8
        );
    }

    #[test]
    fn test_rect_digest_whole_object_equals_digest_of_filled_bytes() {
        let mut buf = vec![0u64; 2048];
        fill(&mut buf, 5, 2);
        let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_le_bytes()).collect();
        let rect = Rect {
            x: 0,
            y: 0,
            w: 1024,
            h: 4,
            stride: 4096,
        };

        let d = rect_digest(5, 2, rect);

        assert_eq!(d, fnv1a64_update(FNV_OFFSET_BASIS, &bytes));
    }

    #[test]
    fn test_rect_digest_sub_rectangle_reads_rows_at_stride() {
        let mut buf = vec![0u64; 2048];
        fill(&mut buf, 5, 2);
        let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_le_bytes()).collect();
        // 3 pixels from x = 1 in rows 1 and 2 of a 4096-byte stride.
        let mut want = FNV_OFFSET_BASIS;
        for row in 1..3usize {
            let start = row * 4096 + 4;
            want = fnv1a64_update(want, &bytes[start..start + 12]);
        }
        let rect = Rect {
            x: 1,
            y: 1,
            w: 3,
            h: 2,
            stride: 4096,
        };

        assert_eq!(rect_digest(5, 2, rect), want);
    }

    #[test]
    fn test_word_differs_between_seeds() {
        let a = word(1, 0, 0);

        let b = word(2, 0, 0);

        assert_ne!(a, b);
    }
}
