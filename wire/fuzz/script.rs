//! Fuzzer bytes → the byte stream one peer sends: a script of operations, each turned into
//! frames with correct CRCs (so the fuzzer reaches what lies behind the CRC checks) or into
//! deliberately bad bytes. Shared (`#[path]`) by the fuzz targets of omega-wire, the
//! monitor's channel (kernel/fuzz) and the host's session (host/fuzz).
//!
//! Operations (first byte % 11; missing bytes read as 0):
//! 0 Data frame: stream, END bit, length byte, payload (the sender's Encoder numbers it)
//! 1 large Data frame: stream, END bit, length u16 (≤ MAX_PAYLOAD), one fill byte
//! 2 Credit: stream, grant u32 (made 1..=MAX_WINDOW)
//! 3 Ack: seq u32, stored u64
//! 4 Error: stream, code u16, length byte, text (lossy UTF-8)
//! 5 Close: stream
//! 6 Hello: count byte, versions, window u32
//! 7 HelloAck: version, count byte, versions, window u32
//! 8 raw frame (NOT clean): version, stream, kind, flags bytes, seq u32, arg u64, length
//!   byte, payload; any field values, correct CRCs
//! 9 garbage (NOT clean): length byte, bytes as they are
//! 10 corruption (NOT clean): position u16, xor byte applied to the stream so far

#![allow(dead_code)]

use omega_wire::{
    Encoder, FLAG_END, Header, Hello, HelloAck, Kind, MAX_FRAME, MAX_PAYLOAD, MAX_WINDOW, SYNC,
    Stream, crc32c, encode_frame,
};

/// Stop adding frames once the stream is this long (bounds each run's memory and time).
pub const MAX_SCRIPT_BYTES: usize = 256 << 10;

/// A frame the script sent, as the receiver must see it (well-formed operations only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub header: Header,
    pub payload: Vec<u8>,
}

pub struct Script {
    /// The bytes on the wire.
    pub bytes: Vec<u8>,
    /// The well-formed frames in order (operations 0..=7).
    pub frames: Vec<Sent>,
    /// No raw frame, garbage or corruption: every byte belongs to a frame in `frames`.
    pub clean: bool,
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        b
    }
    fn stream(&mut self) -> Stream {
        Stream::ALL[usize::from(self.u8()) % Stream::ALL.len()]
    }
}

/// Builds the script's byte stream; `enc` is the sender's encoder (its Data sequence
/// numbers continue across calls).
pub fn build(data: &[u8], enc: &mut Encoder) -> Script {
    let mut input = Input(data);
    let mut s = Script {
        bytes: Vec::new(),
        frames: Vec::new(),
        clean: true,
    };
    let mut frame = vec![0u8; MAX_FRAME];
    while !input.0.is_empty() && s.bytes.len() < MAX_SCRIPT_BYTES {
        let op = input.u8() % 11;
        let written = match op {
            0 | 1 => {
                let stream = input.stream();
                let end = input.u8() & 1 == 1;
                let payload = if op == 0 {
                    let n = usize::from(input.u8());
                    input.bytes(n).to_vec()
                } else {
                    let n = usize::from(input.u16()) % (MAX_PAYLOAD + 1);
                    vec![input.u8(); n]
                };
                let mut h = Header::new(stream, Kind::Data);
                h.seq = enc.next_seq(stream);
                h.flags = if end { FLAG_END } else { 0 };
                h.len = payload.len() as u32;
                let n = enc
                    .data(stream, &payload, end, &mut frame)
                    .expect("data frame");
                s.frames.push(Sent { header: h, payload });
                n
            }
            2 => {
                let stream = input.stream();
                let grant = 1 + input.u32() % MAX_WINDOW;
                let mut h = Header::new(stream, Kind::Credit);
                h.arg = u64::from(grant);
                let n = enc.credit(stream, grant, &mut frame).expect("credit frame");
                s.frames.push(Sent {
                    header: h,
                    payload: Vec::new(),
                });
                n
            }
            3 => {
                let (seq, stored) = (input.u32(), input.u64());
                let mut h = Header::new(Stream::Log, Kind::Ack);
                h.seq = seq;
                h.arg = stored;
                let n = enc.ack(seq, stored, &mut frame).expect("ack frame");
                s.frames.push(Sent {
                    header: h,
                    payload: Vec::new(),
                });
                n
            }
            4 => {
                let stream = input.stream();
                let code = input.u16();
                let n = usize::from(input.u8());
                let text = String::from_utf8_lossy(input.bytes(n)).into_owned();
                let n = enc
                    .error(stream, code, &text, &mut frame)
                    .expect("error frame");
                s.frames.push(sent_of(&frame[..n]));
                n
            }
            5 => {
                let stream = input.stream();
                let n = enc.close(stream, &mut frame).expect("close frame");
                s.frames.push(Sent {
                    header: Header::new(stream, Kind::Close),
                    payload: Vec::new(),
                });
                n
            }
            6 | 7 => {
                let version = if op == 7 { input.u8() } else { 0 };
                let count = usize::from(input.u8() % 20);
                let versions = input.bytes(count).to_vec();
                let window = input.u32();
                let n = if op == 6 {
                    enc.hello(
                        &Hello {
                            versions: &versions,
                            window,
                        },
                        &mut frame,
                    )
                } else {
                    enc.hello_ack(
                        &HelloAck {
                            version,
                            versions: &versions,
                            window,
                            log_stored: 0,
                        },
                        &mut frame,
                    )
                };
                let n = n.expect("hello frame");
                s.frames.push(sent_of(&frame[..n]));
                n
            }
            8 => {
                s.clean = false;
                let fields = [input.u8(), input.u8(), input.u8(), input.u8()];
                let (seq, arg) = (input.u32(), input.u64());
                let n = usize::from(input.u8());
                raw_frame(fields, seq, arg, input.bytes(n), &mut frame)
            }
            9 => {
                s.clean = false;
                let n = usize::from(input.u8());
                let b = input.bytes(n);
                frame[..b.len()].copy_from_slice(b);
                b.len()
            }
            _ => {
                s.clean = false;
                let (pos, x) = (usize::from(input.u16()), input.u8());
                if !s.bytes.is_empty() {
                    let i = pos % s.bytes.len();
                    s.bytes[i] ^= x;
                }
                0
            }
        };
        s.bytes.extend_from_slice(&frame[..written]);
    }
    s
}

/// The `Sent` of a frame the encoder just wrote (header fields as the wire carries them).
fn sent_of(frame: &[u8]) -> Sent {
    let mut d: Box<omega_wire::Decoder> = Box::new(omega_wire::Decoder::new());
    assert_eq!(d.push(frame), frame.len());
    let f = d
        .next_frame()
        .expect("a whole frame")
        .expect("a valid frame");
    Sent {
        header: f.header,
        payload: f.payload.to_vec(),
    }
}

/// A frame with any header field values (not checked against the kind rules) and correct
/// CRCs; the header is postcard-encoded as omega-wire does (docs/wire.md).
fn raw_frame(fields: [u8; 4], seq: u32, arg: u64, payload: &[u8], out: &mut [u8]) -> usize {
    let header = (
        fields[0],
        fields[1],
        fields[2],
        fields[3],
        seq,
        arg,
        payload.len() as u32,
    );
    let mut hb = [0u8; 32];
    let hlen = postcard::to_slice(&header, &mut hb)
        .expect("header fits")
        .len();
    let mut p = 0;
    out[..4].copy_from_slice(&SYNC);
    p += 4;
    out[p] = hlen as u8;
    out[p + 1..p + 1 + hlen].copy_from_slice(&hb[..hlen]);
    let hcrc = crc32c(&out[p..p + 1 + hlen]);
    p += 1 + hlen;
    out[p..p + 4].copy_from_slice(&hcrc.to_le_bytes());
    p += 4;
    out[p..p + payload.len()].copy_from_slice(payload);
    p += payload.len();
    let crc = crc32c(&out[SYNC.len()..p]);
    out[p..p + 4].copy_from_slice(&crc.to_le_bytes());
    p + 4
}

/// Frames a well-formed script must decode to, for a check against `encode_frame`.
pub fn reencode(sent: &Sent) -> Vec<u8> {
    let mut out = vec![0u8; MAX_FRAME];
    let n = encode_frame(&sent.header, &sent.payload, &mut out).expect("re-encodes");
    out.truncate(n);
    out
}
