//! Reading the PNG images that `virsh screenshot` writes (libvirt asks
//! QEMU for PNG when QEMU supports it, as QEMU 10 does).

use std::collections::HashSet;
use std::io::Cursor;

use crate::verdict::ScreenCheck;

/// Stop counting distinct colours after this many (as for PPM screendumps).
const MAX_COLOURS: usize = 256;

/// Largest image accepted, in pixels (a 4K screen is 8.3 M).
const MAX_PIXELS: u64 = 16 << 20;

/// Decodes an 8-bit RGB, RGBA, grey or palette PNG and counts its distinct
/// colours (alpha ignored).
///
/// # Errors
/// A message saying why the data is not a usable PNG.
pub fn check_png(data: &[u8]) -> Result<ScreenCheck, String> {
    let mut decoder = png::Decoder::new(Cursor::new(data));
    // Palette and low bit depths become 8-bit RGB(A)/grey; 16-bit is cut
    // to 8 bits.
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder
        .read_info()
        .map_err(|e| format!("bad PNG header: {e}"))?;
    let (width, height) = {
        let info = reader.info();
        (info.width, info.height)
    };
    let pixels = u64::from(width) * u64::from(height);
    if pixels == 0 || pixels > MAX_PIXELS {
        return Err(format!("implausible PNG size {width}x{height}"));
    }
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| format!("PNG {width}x{height} too large to decode"))?;
    let mut buf = vec![0; size];
    let frame = reader
        .next_frame(&mut buf)
        .map_err(|e| format!("bad PNG data: {e}"))?;
    let channels = match frame.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return Err("PNG palette was not expanded".to_owned()),
    };
    // Grey and RGB colour parts; the alpha byte (last of 2 or 4) is
    // ignored.
    let colour_bytes = if channels % 2 == 0 {
        channels - 1
    } else {
        channels
    };
    let mut colours = HashSet::new();
    for row in buf[..frame.buffer_size()].chunks_exact(frame.line_size) {
        for px in row.chunks_exact(channels) {
            colours.insert(px[..colour_bytes].to_vec());
            if colours.len() >= MAX_COLOURS {
                break;
            }
        }
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

    fn encode_rgb(pixels: &[[u8; 3]], width: u32) -> Vec<u8> {
        let height = u32::try_from(pixels.len()).expect("small") / width;
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, width, height);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc.write_header().expect("header");
            let flat: Vec<u8> = pixels.iter().flatten().copied().collect();
            w.write_image_data(&flat).expect("data");
        }
        out
    }

    #[test]
    fn test_check_png_two_colours_counts_two() {
        let data = encode_rgb(&[[0, 0, 0], [255, 255, 255], [0, 0, 0], [0, 0, 0]], 2);

        let check = check_png(&data).expect("valid image");

        assert_eq!(
            (check.width, check.height, check.distinct_colours),
            (2, 2, 2)
        );
    }

    #[test]
    fn test_check_png_black_counts_one() {
        let data = encode_rgb(&[[0, 0, 0]; 6], 3);

        let check = check_png(&data).expect("valid image");

        assert_eq!(check.distinct_colours, 1);
    }

    #[test]
    fn test_check_png_ppm_data_fails() {
        assert!(check_png(b"P6\n1 1\n255\n\0\0\0").is_err());
    }
}
