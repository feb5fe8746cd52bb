//! A minimal EDID 1.4 base block for `VIRTIO_GPU_CMD_GET_EDID`.
//!
//! Written from the VESA E-EDID 1.4 layout: fixed header, vendor/product,
//! version 1.4, digital 8-bit input, sRGB chromaticity, one detailed timing
//! descriptor (the preferred mode, timings after CVT reduced blanking), a
//! monitor-name descriptor, no extensions, and the checksum byte.

/// Size of an EDID base block.
pub const EDID_BLOCK_SIZE: usize = 128;

/// Monitor name placed in the display product name descriptor.
pub const EDID_MONITOR_NAME: &str = "vugpu";

/// Why no EDID can describe the requested mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EdidError {
    /// A field of the detailed timing descriptor cannot hold the mode:
    /// width and height must be 1..=4095, refresh 1..=240 Hz, and the pixel
    /// clock at most 655.35 MHz.
    #[error("mode {width}x{height}@{refresh} cannot be described by an EDID detailed timing")]
    ModeOutOfRange {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
        /// Requested refresh rate in Hz.
        refresh: u32,
    },
}

// CVT reduced-blanking (v1) constants.
/// Horizontal blanking in pixels.
const RB_H_BLANK: u32 = 160;
/// Horizontal front porch in pixels.
const RB_H_FRONT_PORCH: u32 = 48;
/// Horizontal sync width in pixels.
const RB_H_SYNC: u32 = 32;
/// Vertical front porch in lines.
const RB_V_FRONT_PORCH: u32 = 3;
/// Minimum vertical back porch in lines.
const RB_V_MIN_BACK_PORCH: u32 = 6;
/// Minimum vertical blanking time in microseconds.
const RB_MIN_V_BLANK_US: u64 = 460;

/// Manufacturer id "VUG" packed as three 5-bit letters (A = 1), big endian.
const MANUFACTURER: u16 =
    ((b'V' - b'@') as u16) << 10 | ((b'U' - b'@') as u16) << 5 | (b'G' - b'@') as u16;

/// Pixel pitch used to derive a physical size: 96 DPI, in µm per pixel.
const PIXEL_PITCH_UM: u32 = 264;

/// sRGB primaries and D65 white point (x, y) in 1/1024 units, rounded:
/// red (0.640, 0.330), green (0.300, 0.600), blue (0.150, 0.060),
/// white (0.3127, 0.3290).
const CHROMA: [(u16, u16); 4] = [(655, 338), (307, 614), (154, 61), (320, 337)];

/// Builds a 128-byte EDID 1.4 block whose preferred (first detailed) timing
/// is `width`×`height` at `refresh` Hz.
///
/// # Errors
///
/// [`EdidError::ModeOutOfRange`] if a field of the detailed timing cannot
/// hold the mode.
pub fn generate_edid(
    width: u32,
    height: u32,
    refresh: u32,
) -> Result<[u8; EDID_BLOCK_SIZE], EdidError> {
    let out_of_range = EdidError::ModeOutOfRange {
        width,
        height,
        refresh,
    };
    if !(1..=4095).contains(&width)
        || !(1..=4095).contains(&height)
        || !(1..=240).contains(&refresh)
    {
        return Err(out_of_range);
    }

    let v_sync = cvt_v_sync(width, height);
    // Vertical blanking: enough lines to last RB_MIN_V_BLANK_US.
    let frame_us = 1_000_000 / u64::from(refresh);
    let line_us_x1000 = (frame_us.saturating_sub(RB_MIN_V_BLANK_US) * 1000) / u64::from(height);
    let min_lines = RB_V_FRONT_PORCH + v_sync + RB_V_MIN_BACK_PORCH;
    let v_blank = if line_us_x1000 == 0 {
        return Err(out_of_range);
    } else {
        let lines = (RB_MIN_V_BLANK_US * 1000).div_ceil(line_us_x1000);
        u32::try_from(lines)
            .map_err(|_| out_of_range)?
            .max(min_lines)
    };
    if v_blank > 4095 {
        return Err(out_of_range);
    }
    let h_total = u64::from(width + RB_H_BLANK);
    let v_total = u64::from(height + v_blank);
    // Pixel clock in 10 kHz units, rounded up.
    let clock_10khz = (h_total * v_total * u64::from(refresh)).div_ceil(10_000);
    let clock_10khz = u16::try_from(clock_10khz).map_err(|_| out_of_range)?;

    let mut e = [0u8; EDID_BLOCK_SIZE];
    // Header.
    e[0..8].copy_from_slice(&[0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00]);
    // Vendor and product: manufacturer id, product code 1, serial 0,
    // week 0 (unspecified), year 2026 (stored as year - 1990).
    e[8..10].copy_from_slice(&MANUFACTURER.to_be_bytes());
    e[10..12].copy_from_slice(&1u16.to_le_bytes());
    e[16] = 0;
    e[17] = 36;
    // EDID structure version 1.4.
    e[18] = 1;
    e[19] = 4;
    // Digital input, 8 bits per colour, DisplayPort.
    e[20] = 0x80 | (0b010 << 4) | 0x5;
    // Screen size in cm, from the 96 DPI pitch.
    let width_mm = width * PIXEL_PITCH_UM / 1000;
    let height_mm = height * PIXEL_PITCH_UM / 1000;
    e[21] = cm_byte(width_mm);
    e[22] = cm_byte(height_mm);
    // Gamma 2.2, stored as gamma * 100 - 100.
    e[23] = 120;
    // Features: sRGB default colour space, preferred timing includes the
    // native format and refresh rate, RGB 4:4:4.
    e[24] = 0x04 | 0x02;
    // Chromaticity: low two bits of each coordinate packed in 25..27, high
    // eight bits in 27..35, in the order Rx Ry Gx Gy Bx By Wx Wy.
    let coords: Vec<u16> = CHROMA.iter().flat_map(|&(x, y)| [x, y]).collect();
    for (i, c) in coords.iter().enumerate() {
        let low = (c & 0x3) as u8;
        let shift = 6 - 2 * (i % 4);
        e[25 + i / 4] |= low << shift;
        e[27 + i] = (c >> 2) as u8;
    }
    // No established timings (35..38); standard timings unused (0x01 0x01).
    for slot in e[38..54].chunks_exact_mut(2) {
        slot.copy_from_slice(&[0x01, 0x01]);
    }

    // Descriptor 1: detailed timing of the preferred mode.
    let d = &mut e[54..72];
    d[0..2].copy_from_slice(&clock_10khz.to_le_bytes());
    d[2] = (width & 0xff) as u8;
    d[3] = (RB_H_BLANK & 0xff) as u8;
    d[4] = (((width >> 8) & 0xf) << 4 | ((RB_H_BLANK >> 8) & 0xf)) as u8;
    d[5] = (height & 0xff) as u8;
    d[6] = (v_blank & 0xff) as u8;
    d[7] = (((height >> 8) & 0xf) << 4 | ((v_blank >> 8) & 0xf)) as u8;
    d[8] = (RB_H_FRONT_PORCH & 0xff) as u8;
    d[9] = (RB_H_SYNC & 0xff) as u8;
    d[10] = ((RB_V_FRONT_PORCH & 0xf) << 4 | (v_sync & 0xf)) as u8;
    d[11] = (((RB_H_FRONT_PORCH >> 8) & 0x3) << 6
        | ((RB_H_SYNC >> 8) & 0x3) << 4
        | ((RB_V_FRONT_PORCH >> 4) & 0x3) << 2
        | ((v_sync >> 4) & 0x3)) as u8;
    d[12] = (width_mm & 0xff) as u8;
    d[13] = (height_mm & 0xff) as u8;
    d[14] = (((width_mm >> 8) & 0xf) << 4 | ((height_mm >> 8) & 0xf)) as u8;
    // No borders; non-interlaced, digital separate sync, +hsync, -vsync
    // (the reduced-blanking polarity).
    d[17] = 0x18 | 0x02;

    // Descriptor 2: display product name, newline-terminated, space-padded.
    let d = &mut e[72..90];
    d[3] = 0xfc;
    let text = &mut d[5..18];
    text.fill(b' ');
    let name = EDID_MONITOR_NAME.as_bytes();
    text[..name.len()].copy_from_slice(name);
    text[name.len()] = b'\n';

    // Descriptors 3 and 4: dummy (tag 0x10, all other bytes zero).
    e[90 + 3] = 0x10;
    e[108 + 3] = 0x10;

    // No extension blocks; checksum makes the byte sum 0 mod 256.
    e[126] = 0;
    let sum = e[..127].iter().fold(0u8, |acc, b| acc.wrapping_add(*b));
    e[127] = 0u8.wrapping_sub(sum);
    Ok(e)
}

/// CVT vertical sync width, which encodes the aspect ratio: 4 lines for
/// 4:3, 5 for 16:9, 6 for 16:10, 7 for 5:4 and 15:9, 10 for anything else.
fn cvt_v_sync(width: u32, height: u32) -> u32 {
    let (w, h) = (u64::from(width), u64::from(height));
    if w * 3 == h * 4 {
        4
    } else if w * 9 == h * 16 {
        5
    } else if w * 10 == h * 16 {
        6
    } else if w * 4 == h * 5 || w * 9 == h * 15 {
        7
    } else {
        10
    }
}

/// A size in millimetres as the whole centimetres of EDID bytes 21/22,
/// at least 1 (0 would mean "size unknown").
fn cm_byte(mm: u32) -> u8 {
    u8::try_from(mm.div_ceil(10).clamp(1, 255)).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn byte_sum(block: &[u8]) -> u8 {
        block.iter().fold(0u8, |acc, b| acc.wrapping_add(*b))
    }

    #[test]
    fn test_generate_edid_1280x800_checksum_is_valid() {
        let edid = generate_edid(1280, 800, 60).expect("representable mode");

        assert_eq!(byte_sum(&edid), 0);
    }

    #[test]
    fn test_generate_edid_header_and_version_are_edid_1_4() {
        let edid = generate_edid(1024, 768, 60).expect("representable mode");

        assert_eq!(&edid[0..8], &[0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]);
        assert_eq!((edid[18], edid[19]), (1, 4));
        assert_eq!(edid[126], 0, "no extension blocks");
    }

    #[test]
    fn test_generate_edid_manufacturer_decodes_to_vug() {
        let edid = generate_edid(1024, 768, 60).expect("representable mode");

        let id = u16::from_be_bytes([edid[8], edid[9]]);
        let letter = |shift: u16| char::from(b'@' + ((id >> shift) & 0x1f) as u8);
        assert_eq!(id & 0x8000, 0);
        assert_eq!(
            [letter(10), letter(5), letter(0)]
                .iter()
                .collect::<String>(),
            "VUG"
        );
    }

    #[test]
    fn test_generate_edid_detailed_timing_decodes_to_requested_mode() {
        let edid = generate_edid(2560, 1600, 60).expect("representable mode");

        let d = &edid[54..72];
        let clock_hz = u64::from(u16::from_le_bytes([d[0], d[1]])) * 10_000;
        let h_active = u32::from(d[2]) | u32::from(d[4] >> 4) << 8;
        let h_blank = u32::from(d[3]) | u32::from(d[4] & 0xf) << 8;
        let v_active = u32::from(d[5]) | u32::from(d[7] >> 4) << 8;
        let v_blank = u32::from(d[6]) | u32::from(d[7] & 0xf) << 8;
        assert_eq!((h_active, v_active), (2560, 1600));
        let total = u64::from((h_active + h_blank) * (v_active + v_blank));
        let refresh_mhz = clock_hz * 1000 / total;
        assert!(
            (59_900..=60_100).contains(&refresh_mhz),
            "refresh {refresh_mhz} mHz"
        );
        // Reduced blanking must still leave at least 460 µs of vertical blank.
        let v_blank_us = u64::from(v_blank) * u64::from(h_active + h_blank) * 1_000_000 / clock_hz;
        assert!(v_blank_us >= 450, "vertical blank {v_blank_us} us");
    }

    #[test]
    fn test_generate_edid_monitor_name_descriptor_present() {
        let edid = generate_edid(800, 600, 60).expect("representable mode");

        let d = &edid[72..90];
        assert_eq!(&d[0..5], &[0, 0, 0, 0xfc, 0]);
        assert_eq!(&d[5..11], b"vugpu\n");
        assert!(d[11..18].iter().all(|&b| b == b' '));
    }

    #[test]
    fn test_generate_edid_preferred_timing_flag_set() {
        let edid = generate_edid(800, 600, 60).expect("representable mode");

        assert_ne!(edid[24] & 0x02, 0);
    }

    #[test]
    fn test_generate_edid_width_too_large_rejected() {
        let result = generate_edid(4096, 600, 60);

        assert_eq!(
            result,
            Err(EdidError::ModeOutOfRange {
                width: 4096,
                height: 600,
                refresh: 60
            })
        );
    }

    #[test]
    fn test_generate_edid_16_by_10_mode_uses_cvt_v_sync_6() {
        let edid = generate_edid(1280, 800, 60).expect("representable mode");

        let d = &edid[54..72];
        let v_sync = u32::from(d[10] & 0xf) | u32::from(d[11] & 0x3) << 4;
        assert_eq!(v_sync, 6);
    }

    #[test]
    fn test_generate_edid_odd_aspect_uses_cvt_v_sync_10() {
        let edid = generate_edid(1000, 700, 60).expect("representable mode");

        let d = &edid[54..72];
        assert_eq!(d[10] & 0xf, 10);
    }

    #[test]
    fn test_generate_edid_zero_refresh_rejected() {
        let result = generate_edid(800, 600, 0);

        assert!(result.is_err());
    }

    #[test]
    fn test_generate_edid_pixel_clock_overflow_rejected() {
        // 4000x4000 at 60 Hz needs about 1 GHz, above the 655.35 MHz a
        // detailed timing descriptor can express.
        let result = generate_edid(4000, 4000, 60);

        assert!(result.is_err());
    }
}
