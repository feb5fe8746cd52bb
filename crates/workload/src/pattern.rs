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
    fn test_word_differs_between_seeds() {
        let a = word(1, 0, 0);

        let b = word(2, 0, 0);

        assert_ne!(a, b);
    }
}
