//! Reading the binary PPM (`P6`) images that QMP `screendump` writes.

use std::collections::HashSet;

use crate::verdict::ScreenCheck;

/// Stop counting distinct colours after this many (enough to tell "drawn"
/// from "blank" without hashing every pixel of a busy screen).
const MAX_COLOURS: usize = 256;

/// Largest image accepted, in pixels (a 4K screen is 8.3 M).
const MAX_PIXELS: u64 = 16 << 20;

/// Parses a P6 image with maxval 255 and counts its distinct colours.
///
/// # Errors
/// A message saying what is wrong with the header or why the pixel data is
/// short.
pub fn check_ppm(data: &[u8]) -> Result<ScreenCheck, String> {
    let mut pos = 0;
    let mut fields = Vec::with_capacity(4);
    while fields.len() < 4 {
        // Skip whitespace and comments between header fields.
        while pos < data.len() {
            if data[pos].is_ascii_whitespace() {
                pos += 1;
            } else if data[pos] == b'#' {
                while pos < data.len() && data[pos] != b'\n' {
                    pos += 1;
                }
            } else {
                break;
            }
        }
        let start = pos;
        while pos < data.len() && !data[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if start == pos {
            return Err("truncated PPM header".to_owned());
        }
        fields.push(String::from_utf8_lossy(&data[start..pos]).into_owned());
    }
    // Exactly one whitespace byte separates the header from the pixels.
    pos += 1;
    if fields[0] != "P6" {
        return Err(format!("not a binary PPM (magic {:?})", fields[0]));
    }
    let parse = |s: &str, what: &str| {
        s.parse::<u32>()
            .map_err(|_| format!("bad PPM {what} {s:?}"))
    };
    let width = parse(&fields[1], "width")?;
    let height = parse(&fields[2], "height")?;
    let maxval = parse(&fields[3], "maxval")?;
    if maxval != 255 {
        return Err(format!("unsupported PPM maxval {maxval}"));
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels == 0 || pixels > MAX_PIXELS {
        return Err(format!("implausible PPM size {width}x{height}"));
    }
    let need = usize::try_from(pixels * 3).map_err(|_| "PPM too large".to_owned())?;
    let body = data
        .get(pos..)
        .filter(|b| b.len() >= need)
        .ok_or_else(|| format!("PPM pixel data short: need {need} bytes"))?;
    let mut colours = HashSet::new();
    for px in body[..need].chunks_exact(3) {
        colours.insert([px[0], px[1], px[2]]);
        if colours.len() >= MAX_COLOURS {
            break;
        }
    }
    Ok(ScreenCheck {
        width,
        height,
        distinct_colours: colours.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(pixels: &[[u8; 3]], width: u32) -> Vec<u8> {
        let height = u32::try_from(pixels.len()).expect("small") / width;
        let mut out = format!("P6\n# comment\n{width} {height}\n255\n").into_bytes();
        for px in pixels {
            out.extend_from_slice(px);
        }
        out
    }

    #[test]
    fn test_check_ppm_two_colours_counts_two() {
        let data = image(&[[0, 0, 0], [255, 255, 255], [0, 0, 0], [0, 0, 0]], 2);

        let check = check_ppm(&data).expect("valid image");

        assert_eq!(
            (check.width, check.height, check.distinct_colours),
            (2, 2, 2)
        );
    }

    #[test]
    fn test_check_ppm_uniform_counts_one() {
        let data = image(&[[9, 9, 9]; 6], 3);

        let check = check_ppm(&data).expect("valid image");

        assert_eq!(check.distinct_colours, 1);
    }

    #[test]
    fn test_check_ppm_short_data_fails() {
        let mut data = image(&[[1, 2, 3]; 4], 2);
        data.truncate(data.len() - 1);

        assert!(check_ppm(&data).is_err());
    }

    #[test]
    fn test_check_ppm_ascii_magic_fails() {
        assert!(check_ppm(b"P3\n1 1\n255\n0 0 0\n").is_err());
    }
}
