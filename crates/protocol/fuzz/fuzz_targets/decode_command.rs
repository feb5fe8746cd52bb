//! Fuzzes request decoding and response encoding with guest-controlled
//! bytes.
//!
//! Input layout: byte 0 picks the entry limit (so the limit paths are hit
//! without needing 16384 entries), bytes 1..3 the size of the response
//! buffer, the rest is the request. Checked properties: decoding never
//! panics; a decoded command re-encodes to bytes that decode to the same
//! command; entry vectors respect the limit and the bytes present; encoding
//! never writes more than the buffer or than `encoded_len`, and the header
//! it writes echoes the request's fence.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vugpu_protocol::wire::VIRTIO_GPU_FLAG_FENCE;
use vugpu_protocol::{
    decode_command, decode_header, DecodeLimits, ErrorCode, GpuCommand, GpuResponse,
};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let limits = DecodeLimits {
        max_backing_entries: u32::from(data[0]),
    };
    let out_len = usize::from(u16::from_le_bytes([data[1], data[2]]) % 2048);
    let request = &data[3..];

    let decoded = decode_command(request, &limits);
    let header = decode_header(request);

    let (hdr, response) = match decoded {
        Ok((hdr, cmd)) => {
            assert_eq!(Ok(hdr), header);
            if let GpuCommand::ResourceAttachBacking { entries, .. }
            | GpuCommand::ResourceCreateBlob { entries, .. } = &cmd
            {
                assert!(entries.len() <= limits.max_backing_entries as usize);
                assert!(entries.len() * 16 <= request.len());
            }
            let again = decode_command(&cmd.to_bytes(&hdr), &limits);
            assert_eq!(again, Ok((hdr, cmd.clone())));
            let response = match cmd {
                GpuCommand::GetDisplayInfo => GpuResponse::OkDisplayInfo(vec![]),
                GpuCommand::GetEdid { scanout } => {
                    GpuResponse::OkEdid(vec![0; (scanout % 1100) as usize])
                }
                GpuCommand::GetCapset { capset_version, .. } => {
                    GpuResponse::OkCapset(vec![0; (capset_version % 600) as usize])
                }
                _ => GpuResponse::OkNoData,
            };
            (hdr, response)
        }
        Err(e) => match header {
            Ok(hdr) => (hdr, GpuResponse::Err(e.error_code())),
            Err(_) => return,
        },
    };

    let mut out = vec![0u8; out_len];
    match response.encode(&hdr, &mut out) {
        Ok(n) => {
            assert_eq!(n, response.encoded_len());
            assert!(n <= out.len());
            let echoed = decode_header(&out).expect("encoded response has a header");
            assert_eq!(echoed.is_fenced(), hdr.is_fenced());
            if hdr.flags & VIRTIO_GPU_FLAG_FENCE != 0 {
                assert_eq!(echoed.fence_id, hdr.fence_id);
            }
        }
        Err(_) => {
            let fallback = response.encode_or_unspec(&hdr, &mut out);
            if out.len() >= 24 {
                let (n, type_) = fallback.expect("room for a header");
                assert!(n <= out.len());
                assert!(type_ == response.response_type()
                    || type_ == ErrorCode::Unspec.response_type());
            } else {
                assert!(fallback.is_err());
            }
        }
    }
});
