//! Fuzzes the config-space accessors (offsets and lengths come from the
//! vhost-user frontend) and the EDID generator (mode from the command line
//! or the frontend). Checked: no panic, reads stay inside the 16-byte space,
//! writes only ever clear `events_read` bits, every EDID has a valid checksum.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vugpu_protocol::generate_edid;
use vugpu_protocol::wire::virtio_gpu_config;

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let word = |i: usize| u32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);

    let mut cfg = virtio_gpu_config::new(word(0) % 20, word(4) % 4);
    cfg.events_read = word(8).into();
    if let Some(bytes) = cfg.read_range(word(12) % 32, word(0) % 32) {
        assert!(bytes.len() <= 16);
    }
    let before = cfg.events_read.get();
    let offset = u32::from(data[0] % 20);
    let _ = cfg.write_range(offset, &data[16..]);
    assert_eq!(cfg.events_read.get() & !before, 0, "a write set an event bit");
    assert_eq!(cfg.events_clear.get(), 0);

    if let Ok(edid) = generate_edid(word(0) % 5000, word(4) % 5000, word(8) % 300) {
        let sum = edid.iter().fold(0u8, |a, b| a.wrapping_add(*b));
        assert_eq!(sum, 0);
    }
});
