//! Dependency-free property test: pseudo-random and mutated requests through
//! `decode_command` and responses through `encode`, on stable Rust. The
//! cargo-fuzz targets in `fuzz/` check the same properties with coverage
//! guidance (nightly only).

use std::collections::BTreeMap;

use crate::wire::*;
use crate::*;

/// Iterations; each decodes one buffer and encodes one response.
const ITERATIONS: usize = 200_000;

/// xorshift64*: deterministic, so a failure reproduces with the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn u32(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }
}

/// Well-formed requests to mutate, one per served command plus 3D ones.
fn seeds(rng: &mut Rng) -> Vec<Vec<u8>> {
    let hdr = CtrlHeader {
        flags: VIRTIO_GPU_FLAG_FENCE,
        fence_id: rng.next(),
        ..Default::default()
    };
    let rect = Rect {
        x: 1,
        y: 2,
        width: 3,
        height: 4,
    };
    let entries = vec![
        MemEntry {
            addr: 0x1000,
            length: 0x1000,
        };
        3
    ];
    let pos = CursorPos {
        scanout_id: 0,
        x: 5,
        y: 6,
    };
    let mut seeds: Vec<Vec<u8>> = [
        GpuCommand::GetDisplayInfo,
        GpuCommand::GetEdid { scanout: 0 },
        GpuCommand::ResourceCreate2d {
            resource_id: 1,
            format: VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM,
            width: 64,
            height: 64,
        },
        GpuCommand::ResourceUnref { resource_id: 1 },
        GpuCommand::SetScanout {
            scanout_id: 0,
            resource_id: 1,
            rect,
        },
        GpuCommand::ResourceFlush {
            resource_id: 1,
            rect,
        },
        GpuCommand::TransferToHost2d {
            resource_id: 1,
            rect,
            offset: 64,
        },
        GpuCommand::ResourceAttachBacking {
            resource_id: 1,
            entries: entries.clone(),
        },
        GpuCommand::ResourceDetachBacking { resource_id: 1 },
        GpuCommand::GetCapsetInfo { capset_index: 0 },
        GpuCommand::GetCapset {
            capset_id: 1,
            capset_version: 1,
        },
        GpuCommand::ResourceAssignUuid { resource_id: 1 },
        GpuCommand::ResourceCreateBlob {
            resource_id: 2,
            blob_mem: VIRTIO_GPU_BLOB_MEM_GUEST,
            blob_flags: 0,
            blob_id: 0,
            size: 0x3000,
            entries,
        },
        GpuCommand::SetScanoutBlob {
            scanout_id: 0,
            resource_id: 2,
            width: 64,
            height: 64,
            format: VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM,
            strides: [256, 0, 0, 0],
            offsets: [0; 4],
            rect,
        },
        GpuCommand::UpdateCursor {
            pos,
            resource_id: 3,
            hot_x: 1,
            hot_y: 1,
        },
        GpuCommand::MoveCursor {
            pos,
            resource_id: 3,
        },
    ]
    .iter()
    .map(|c| c.to_bytes(&hdr))
    .collect();
    let mut submit = hdr.to_wire();
    submit.type_ = VIRTIO_GPU_CMD_SUBMIT_3D.into();
    seeds.push(zerocopy::IntoBytes::as_bytes(&submit).to_vec());
    seeds
}

/// One input: random bytes, or a seed mutated by overwriting bytes, the
/// entry count, the type, or the length.
fn input(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    if rng.below(8) == 0 {
        let len = rng.below(300) as usize;
        return (0..len).map(|_| rng.next() as u8).collect();
    }
    let mut buf = seeds[rng.below(seeds.len() as u64) as usize].clone();
    for _ in 0..rng.below(4) {
        match rng.below(6) {
            0 if !buf.is_empty() => {
                let i = rng.below(buf.len() as u64) as usize;
                buf[i] = rng.next() as u8;
            }
            // nr_entries of ATTACH_BACKING (offset 28) / CREATE_BLOB (36).
            1 | 2 => {
                let at = if rng.below(2) == 0 { 28 } else { 36 };
                let count = match rng.below(4) {
                    0 => u32::MAX,
                    1 => rng.u32(),
                    _ => rng.below(8) as u32,
                };
                if buf.len() >= at + 4 {
                    buf[at..at + 4].copy_from_slice(&count.to_le_bytes());
                }
            }
            3 if buf.len() >= 4 => {
                let type_ = match rng.below(3) {
                    0 => 0x0100 + rng.below(16) as u32,
                    1 => 0x0200 + rng.below(12) as u32,
                    _ => rng.u32(),
                };
                buf[..4].copy_from_slice(&type_.to_le_bytes());
            }
            4 => {
                let len = rng.below(buf.len() as u64 + 1) as usize;
                buf.truncate(len);
            }
            _ => {
                let extra = rng.below(64) as usize;
                buf.extend((0..extra).map(|_| rng.next() as u8));
            }
        }
    }
    buf
}

fn outcome(result: &Result<(CtrlHeader, GpuCommand), DecodeError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(DecodeError::EntriesTruncated { .. }) => "entries_truncated",
        Err(DecodeError::TooManyEntries { .. }) => "too_many_entries",
        Err(DecodeError::TooShort { .. }) => "too_short",
        Err(DecodeError::UnknownCommand { .. }) => "unknown",
        Err(DecodeError::Unsupported { .. }) => "unsupported",
    }
}

#[test]
fn test_decode_encode_200k_mutated_inputs_hold_invariants() {
    let mut rng = Rng(0x5eed_f00d_6b11_c0de);
    let seeds = seeds(&mut rng);
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();

    for _ in 0..ITERATIONS {
        let bytes = input(&mut rng, &seeds);
        let limits = DecodeLimits {
            max_backing_entries: rng.below(6) as u32,
        };

        let result = decode_command(&bytes, &limits);
        *outcomes.entry(outcome(&result)).or_default() += 1;

        let hdr = match &result {
            Ok((hdr, cmd)) => {
                if let GpuCommand::ResourceAttachBacking { entries, .. }
                | GpuCommand::ResourceCreateBlob { entries, .. } = cmd
                {
                    assert!(entries.len() <= limits.max_backing_entries as usize);
                    assert!(entries.len() * 16 <= bytes.len());
                }
                assert_eq!(
                    decode_command(&cmd.to_bytes(hdr), &limits).as_ref(),
                    Ok(&(*hdr, cmd.clone())),
                    "re-encoding changed the command"
                );
                *hdr
            }
            Err(_) => match decode_header(&bytes) {
                Ok(hdr) => hdr,
                Err(_) => {
                    assert!(bytes.len() < 24);
                    continue;
                }
            },
        };
        let response = match result {
            Ok(_) => GpuResponse::OkNoData,
            Err(e) => GpuResponse::Err(e.error_code()),
        };
        let mut out = vec![0u8; rng.below(40) as usize];
        match response.encode(&hdr, &mut out) {
            Ok(n) => {
                let echoed = decode_header(&out[..n]).expect("header written");
                assert_eq!(echoed.is_fenced(), hdr.is_fenced());
                assert_eq!(echoed.type_, response.response_type());
            }
            Err(e) => assert_eq!(
                e,
                EncodeError::BufferTooSmall {
                    need: 24,
                    have: out.len()
                }
            ),
        }
    }

    eprintln!("decode outcomes over {ITERATIONS} inputs: {outcomes:?}");
    // Every decode outcome must have been exercised, or the test proves
    // little.
    for name in [
        "ok",
        "entries_truncated",
        "too_many_entries",
        "too_short",
        "unknown",
        "unsupported",
    ] {
        assert!(
            outcomes.get(name).copied().unwrap_or(0) > 100,
            "outcome {name} barely exercised: {outcomes:?}"
        );
    }
}
