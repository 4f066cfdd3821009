#![allow(dead_code)]
use omega_wire::*;

/// Encodes `msg` on `stream` as Data frames (no credit), appending to `out`.
pub fn encode_message(enc: &mut Encoder, stream: Stream, msg: &[u8], out: &mut Vec<u8>) {
    let mut buf = vec![0u8; MAX_FRAME];
    for (chunk, end) in fragments(msg) {
        let n = enc.data(stream, chunk, end, &mut buf).unwrap();
        out.extend_from_slice(&buf[..n]);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub header: Header,
    pub payload: Vec<u8>,
}

/// Feeds `bytes` in chunks of the given sizes (cycled) and collects frames and errors.
pub fn decode_all(
    dec: &mut Decoder,
    bytes: &[u8],
    chunks: &[usize],
) -> (Vec<Owned>, Vec<WireError>) {
    let mut frames = Vec::new();
    let mut errors = Vec::new();
    let mut pos = 0;
    let mut ci = 0;
    let mut stalls = 0;
    while pos < bytes.len() {
        let want = chunks[ci % chunks.len()].max(1);
        ci += 1;
        let end = (pos + want).min(bytes.len());
        let mut slice = &bytes[pos..end];
        while !slice.is_empty() {
            let n = dec.push(slice);
            slice = &slice[n..];
            pos += n;
            let mut got = false;
            while let Some(r) = dec.next_frame() {
                got = true;
                match r {
                    Ok(f) => frames.push(Owned {
                        header: f.header,
                        payload: f.payload.to_vec(),
                    }),
                    Err(e) => errors.push(e),
                }
            }
            if n == 0 && !got {
                stalls += 1;
                assert!(
                    stalls < 3,
                    "decoder wedged: push took nothing and yielded nothing"
                );
            } else {
                stalls = 0;
            }
        }
    }
    (frames, errors)
}
