//! Tests of guest messages. The PSP side is built here independently of `seal_message` /
//! `open_message`: literal offsets from the ABI spec (chapter "Guest Messages", table
//! "Message Header Format") and `aes_gcm` called directly.

use super::*;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit};
use std::boxed::Box;
use std::vec::Vec;
use std::{format, println, vec};

const KEY: [u8; 32] = [0x5A; 32];

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

// ------------------------------------------------------------------------------------------
// Known-answer tests pinning the primitive: McGrew & Viega, "The Galois/Counter Mode of
// Operation (GCM)", test cases 13, 14 and 16 (AES-256, 96-bit IV), also in NIST's GCM
// validation vectors.

#[test]
fn aes256_gcm_known_answers() {
    // Test case 13: empty plaintext, zero key and IV.
    let key = [0u8; 32];
    let tag = gcm_seal(&key, &[0; 12], &[], &mut []).unwrap();
    assert_eq!(tag.to_vec(), hex("530f8afbc74536b9a963b4f1c4cb738b"));
    // Test case 14: one zero block.
    let mut buf = [0u8; 16];
    let tag = gcm_seal(&key, &[0; 12], &[], &mut buf).unwrap();
    assert_eq!(buf.to_vec(), hex("cea7403d4d606b6e074ec5d3baf39d18"));
    assert_eq!(tag.to_vec(), hex("d0d1c8a799996bf0265b98b5d48ab919"));
    // Test case 16: with additional data, 60-byte plaintext.
    let key: [u8; 32] = hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
        .try_into()
        .unwrap();
    let iv: [u8; 12] = hex("cafebabefacedbaddecaf888").try_into().unwrap();
    let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
    let plain = hex(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
         1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
    );
    let mut buf = plain.clone();
    let tag = gcm_seal(&key, &iv, &aad, &mut buf).unwrap();
    assert_eq!(
        buf,
        hex(
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
             8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
        )
    );
    assert_eq!(tag.to_vec(), hex("76fc6ece0f4e1768cddf8853bb2d551b"));
    gcm_open(&key, &iv, &aad, &mut buf, &tag).unwrap();
    assert_eq!(buf, plain);
    let mut bad = tag;
    bad[15] ^= 1;
    let mut buf2 = buf.clone();
    gcm_seal(&key, &iv, &aad, &mut buf2).unwrap();
    assert_eq!(
        gcm_open(&key, &iv, &aad, &mut buf2, &bad),
        Err(GuestMsgError::AuthFailed)
    );
}

// ------------------------------------------------------------------------------------------
// Layout (ABI spec #56860 rev 1.55, tables "Message Header Format", "MSG_REPORT_REQ",
// "MSG_REPORT_RSP", "MSG_KEY_REQ", "MSG_KEY_RSP"; report size from "ATTESTATION_REPORT").

#[test]
fn layout_matches_spec() {
    assert_eq!(SEQNO_OFFSET, 0x20);
    assert_eq!(ALGO_OFFSET, 0x30);
    assert_eq!(HDR_SZ_OFFSET, 0x32);
    assert_eq!(MSG_TYPE_OFFSET, 0x34);
    assert_eq!(MSG_VERSION_OFFSET, 0x35);
    assert_eq!(MSG_SZ_OFFSET, 0x36);
    assert_eq!(MSG_VMPCK_OFFSET, 0x3C);
    assert_eq!(MSG_HDR_SIZE, 0x60);
    assert_eq!(AAD_RANGE, 0x30..0x60);
    assert_eq!(MSG_PAYLOAD_MAX, 4000);
    assert_eq!(REPORT_LEN, 0x4A0);
    assert_eq!(REPORT_RSP_SIZE, 0x4C0);
    assert_eq!(
        (
            msg_type::KEY_REQ,
            msg_type::KEY_RSP,
            msg_type::REPORT_REQ,
            msg_type::REPORT_RSP
        ),
        (3, 4, 5, 6)
    );
    let r = DerivedKeyRequest {
        root_key_select: 1,
        guest_field_select: 0x3F,
        vmpl: 2,
        guest_svn: 7,
        tcb_version: 0x1122_3344_5566_7788,
    };
    let p = r.encode();
    assert_eq!(p.len(), 32);
    assert_eq!(&p[0..8], &[1, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&p[8..16], &[0x3F, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&p[16..24], &[2, 0, 0, 0, 7, 0, 0, 0]);
    assert_eq!(&p[24..32], &0x1122_3344_5566_7788u64.to_le_bytes());
    assert_eq!(iv_from_seqno(0x0102), [2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
}

// ------------------------------------------------------------------------------------------
// A simulated PSP + hypervisor.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Reply {
    /// Answer properly.
    Good,
    /// Answer with this SW_EXITINFO2 and no response.
    ExitInfo2(u64),
    /// "Busy" this many times, then answer.
    BusyThenGood(u32),
    /// Transport failure.
    TransportError,
}

type Mutator = Box<dyn FnMut(&mut [u8; 4096])>;

struct Psp {
    key: [u8; 32],
    /// The PSP's own counter: last sequence number used.
    counter: u64,
    reply: Reply,
    report: Vec<u8>,
    derived: [u8; 32],
    status: u32,
    /// Overrides for the response header (applied before encryption, so they are authentic).
    resp_type: Option<u8>,
    resp_version: Option<u8>,
    resp_vmpck: Option<u8>,
    resp_seqno_delta: u64,
    /// Applied to the sealed response page (tampering in transit).
    mutate: Option<Mutator>,
    calls: usize,
    requests: Vec<Vec<u8>>,
    last_request_payload: Vec<u8>,
    /// A fake clock, advanced only by the messenger's waits.
    now_ms: u64,
    /// The clock at each request.
    request_times: Vec<u64>,
}

impl Psp {
    fn new() -> Self {
        let mut report = vec![0u8; 1184];
        report[0] = 2;
        Self {
            key: KEY,
            counter: 0,
            reply: Reply::Good,
            report,
            derived: [0xD7; 32],
            status: 0,
            resp_type: None,
            resp_version: None,
            resp_vmpck: None,
            resp_seqno_delta: 1,
            mutate: None,
            calls: 0,
            requests: Vec::new(),
            last_request_payload: Vec::new(),
            now_ms: 0,
            request_times: Vec::new(),
        }
    }

    /// Decrypt and check a request exactly as the PSP would; None = the PSP rejects it.
    fn open_request(&mut self, page: &[u8; 4096]) -> Option<(u8, u8, Vec<u8>)> {
        let seqno = u64::from_le_bytes(page[0x20..0x28].try_into().unwrap());
        if seqno != self.counter + 1
            || page[0x30] != 1
            || page[0x31] != 1
            || page[0x32..0x34] != [0x60, 0]
            || page[0x3C] != 0
        {
            return None;
        }
        let sz = u16::from_le_bytes([page[0x36], page[0x37]]) as usize;
        let mut body = page[0x60..0x60 + sz].to_vec();
        let mut iv = [0u8; 12];
        iv[..8].copy_from_slice(&seqno.to_le_bytes());
        let cipher = Aes256Gcm::new_from_slice(&self.key).unwrap();
        cipher
            .decrypt_in_place_detached(
                (&iv).into(),
                &page[0x30..0x60],
                &mut body,
                page[0..16].into(),
            )
            .ok()?;
        self.counter = seqno;
        Some((page[0x34], page[0x35], body))
    }

    fn seal_response(
        &mut self,
        msg_type: u8,
        msg_version: u8,
        payload: &[u8],
        out: &mut [u8; 4096],
    ) {
        let seqno = self.counter + self.resp_seqno_delta;
        self.counter += 1;
        out.fill(0);
        out[0x20..0x28].copy_from_slice(&seqno.to_le_bytes());
        out[0x30] = 1;
        out[0x31] = 1;
        out[0x32..0x34].copy_from_slice(&0x60u16.to_le_bytes());
        out[0x34] = self.resp_type.unwrap_or(msg_type);
        out[0x35] = self.resp_version.unwrap_or(msg_version);
        out[0x36..0x38].copy_from_slice(&(payload.len() as u16).to_le_bytes());
        out[0x3C] = self.resp_vmpck.unwrap_or(0);
        let mut body = payload.to_vec();
        let mut iv = [0u8; 12];
        iv[..8].copy_from_slice(&seqno.to_le_bytes());
        let cipher = Aes256Gcm::new_from_slice(&self.key).unwrap();
        let tag = cipher
            .encrypt_in_place_detached((&iv).into(), &out[0x30..0x60], &mut body)
            .unwrap();
        out[0..16].copy_from_slice(&tag);
        out[0x60..0x60 + body.len()].copy_from_slice(&body);
    }
}

impl GuestRequestTransport for Psp {
    fn guest_request(
        &mut self,
        request: &[u8; 4096],
        response: &mut [u8; 4096],
    ) -> Result<u64, GhcbError> {
        self.calls += 1;
        self.requests.push(request.to_vec());
        self.request_times.push(self.now_ms);
        match self.reply {
            Reply::TransportError => return Err(GhcbError::HostError(5)),
            Reply::ExitInfo2(v) => return Ok(v),
            Reply::BusyThenGood(n) if self.calls as u32 <= n => return Ok(0x2_0000_0000),
            _ => {}
        }
        let Some((t, v, body)) = self.open_request(request) else {
            return Ok(0x16); // firmware: INVALID_PARAM-like rejection
        };
        self.last_request_payload = body.clone();
        let mut payload = Vec::new();
        match t {
            5 => {
                assert_eq!(body.len(), 0x60);
                payload.extend_from_slice(&self.status.to_le_bytes());
                payload.extend_from_slice(&(self.report.len() as u32).to_le_bytes());
                payload.extend_from_slice(&[0u8; 24]);
                payload.extend_from_slice(&self.report);
            }
            3 => {
                assert_eq!(body.len(), 0x20);
                payload.extend_from_slice(&self.status.to_le_bytes());
                payload.extend_from_slice(&[0u8; 28]);
                payload.extend_from_slice(&self.derived);
            }
            _ => return Ok(0x16),
        }
        self.seal_response(t + 1, v, &payload, response);
        if let Some(m) = self.mutate.as_mut() {
            m(response);
        }
        Ok(0)
    }

    fn wait_ms(&mut self, ms: u64) {
        self.now_ms += ms;
    }
}

fn messenger() -> GuestMessenger {
    GuestMessenger::new(Vmpck::new(KEY, 0).unwrap())
}

// ------------------------------------------------------------------------------------------

#[test]
fn report_round_trip_and_sequence_numbers() {
    let mut psp = Psp::new();
    psp.report[0x50..0x90].copy_from_slice(&[0xAB; 64]);
    let mut m = messenger();
    let data = [0xAB; 64];
    let r = m.attestation_report(&mut psp, data).unwrap();
    assert_eq!(&r[..], &psp.report[..]);
    assert_eq!(&psp.last_request_payload[..64], &data);
    // VMPL 0, KEY_SEL 1 (VCEK), reserved.
    assert_eq!(&psp.last_request_payload[64..72], &[0, 0, 0, 0, 1, 0, 0, 0]);
    assert_eq!(&psp.last_request_payload[72..], &[0u8; 24]);
    // Request 1, response 2.
    assert_eq!(
        u64::from_le_bytes(psp.requests[0][0x20..0x28].try_into().unwrap()),
        1
    );
    assert_eq!(m.last_seqno(), 2);
    m.attestation_report(&mut psp, [1; 64]).unwrap();
    assert_eq!(
        u64::from_le_bytes(psp.requests[1][0x20..0x28].try_into().unwrap()),
        3
    );
    assert_eq!(m.last_seqno(), 4);
    assert!(m.is_usable());
    // The request page leaves nothing in clear but the header.
    assert!(!psp.requests[1].windows(64).any(|w| w == [1u8; 64]));
}

#[test]
fn derived_key_round_trip() {
    let mut psp = Psp::new();
    let mut m = messenger();
    let req = DerivedKeyRequest {
        guest_field_select: guest_field::MEASUREMENT | guest_field::GUEST_POLICY,
        ..Default::default()
    };
    let k = m.derived_key(&mut psp, &req).unwrap();
    assert_eq!(k.as_bytes(), &[0xD7; 32]);
    assert_eq!(psp.last_request_payload, req.encode());
    assert_eq!(format!("{k:?}"), "DerivedKey(<redacted>)");
    assert_eq!(m.last_seqno(), 2);
}

#[test]
fn firmware_status_keeps_key() {
    let mut psp = Psp::new();
    psp.status = 0x16;
    let mut m = messenger();
    assert_eq!(
        m.attestation_report(&mut psp, [0; 64]),
        Err(GuestMsgError::FirmwareStatus(0x16))
    );
    assert!(m.is_usable());
    assert_eq!(m.last_seqno(), 2);
    psp.status = 0;
    m.attestation_report(&mut psp, [0; 64]).unwrap();
    assert_eq!(m.last_seqno(), 4);
    // An authentic response with a wrong REPORT_SIZE is refused but keeps the key.
    psp.report.push(0);
    assert_eq!(
        m.attestation_report(&mut psp, [0; 64]),
        Err(GuestMsgError::BadPayload)
    );
    assert!(m.is_usable());
}

fn assert_wiped(m: &mut GuestMessenger, psp: &mut Psp) {
    assert!(!m.is_usable());
    let calls = psp.calls;
    assert_eq!(
        m.attestation_report(psp, [0; 64]),
        Err(GuestMsgError::Disabled)
    );
    assert_eq!(
        m.derived_key(psp, &DerivedKeyRequest::default()).err(),
        Some(GuestMsgError::Disabled)
    );
    assert_eq!(
        psp.calls, calls,
        "a disabled messenger must not talk to the host"
    );
}

/// A report request answered by a PSP that `set_up` altered fails with `err` and wipes
/// the key; returns the PSP for further checks.
#[track_caller]
fn refused_and_wiped(set_up: impl FnOnce(&mut Psp), err: GuestMsgError) -> Psp {
    let mut psp = Psp::new();
    set_up(&mut psp);
    let mut m = messenger();
    assert_eq!(m.attestation_report(&mut psp, [0; 64]), Err(err));
    assert_wiped(&mut m, &mut psp);
    psp
}

#[test]
fn tampering_with_any_byte_wipes() {
    // Every header byte, every payload byte of a report response, and a byte past MSG_SZ
    // (ignored: not part of the message).
    for i in 0..(0x60 + REPORT_RSP_SIZE) {
        for bit in [0x01u8, 0x80] {
            let mut psp = Psp::new();
            psp.mutate = Some(Box::new(move |p: &mut [u8; 4096]| p[i] ^= bit));
            let mut m = messenger();
            let r = m.attestation_report(&mut psp, [0; 64]);
            assert!(r.is_err(), "flip of byte {i:#x} bit {bit:#x} accepted");
            assert_wiped(&mut m, &mut psp);
        }
    }
    let mut psp = Psp::new();
    psp.mutate = Some(Box::new(|p: &mut [u8; 4096]| {
        p[0x60 + REPORT_RSP_SIZE + 1] ^= 1
    }));
    let mut m = messenger();
    m.attestation_report(&mut psp, [0; 64]).unwrap();
}

#[test]
fn wrong_seqno_type_version_vmpck_or_key_wipe() {
    // Sequence number: counter+3 instead of counter+2 (authentic, but wrong).
    refused_and_wiped(
        |p| p.resp_seqno_delta = 2,
        GuestMsgError::WrongSeqno {
            expected: 2,
            got: 3,
        },
    );
    // Type: a KEY_RSP answering a report request.
    refused_and_wiped(|p| p.resp_type = Some(4), GuestMsgError::BadHeader);
    // Message version.
    refused_and_wiped(|p| p.resp_version = Some(2), GuestMsgError::BadHeader);
    // VMPCK id.
    refused_and_wiped(|p| p.resp_vmpck = Some(1), GuestMsgError::BadHeader);
    // A PSP with another key: the request is rejected by the "PSP" (firmware error) -> wipe.
    refused_and_wiped(|p| p.key = [1; 32], GuestMsgError::HostError(0x16));
}

#[test]
fn replayed_response_wipes() {
    let mut psp = Psp::new();
    let mut m = messenger();
    m.attestation_report(&mut psp, [0; 64]).unwrap();
    // Capture a genuine response, then replay it for the next request.
    let mut first = [0u8; 4096];
    let mut psp2 = Psp::new();
    let mut m2 = messenger();
    psp2.mutate = Some(Box::new(|_p: &mut [u8; 4096]| {}));
    m2.attestation_report(&mut psp2, [0; 64]).unwrap();
    let req: [u8; 4096] = psp2.requests[0].clone().try_into().unwrap();
    let mut psp3 = Psp::new();
    psp3.guest_request(&req, &mut first).unwrap();
    struct Replay([u8; 4096]);
    impl GuestRequestTransport for Replay {
        fn guest_request(
            &mut self,
            _r: &[u8; 4096],
            resp: &mut [u8; 4096],
        ) -> Result<u64, GhcbError> {
            resp.copy_from_slice(&self.0);
            Ok(0)
        }
        fn wait_ms(&mut self, _ms: u64) {}
    }
    assert_eq!(
        m.attestation_report(&mut Replay(first), [0; 64]),
        Err(GuestMsgError::WrongSeqno {
            expected: 4,
            got: 2
        })
    );
    assert!(!m.is_usable());
}

#[test]
fn host_errors() {
    // Only SW_EXITINFO2 = 2 << 32 exactly is "busy": busy with a firmware error beside it,
    // or any other error, fails at once (one request, no waiting) and wipes.
    for v in [
        0x16u64,
        0x2,
        0x1_0000_0000,
        0x3_0000_0000,
        0x2_0000_0001,
        0x2_0000_0016,
        u64::MAX,
    ] {
        let psp = refused_and_wiped(
            |p| p.reply = Reply::ExitInfo2(v),
            GuestMsgError::HostError(v),
        );
        assert_eq!((psp.calls, psp.now_ms), (1, 0));
    }
    refused_and_wiped(
        |p| p.reply = Reply::TransportError,
        GuestMsgError::Transport(GhcbError::HostError(5)),
    );
}

#[test]
fn busy_backs_off_with_identical_bytes() {
    let mut psp = Psp::new();
    psp.reply = Reply::BusyThenGood(3);
    let mut m = messenger();
    m.attestation_report(&mut psp, [7; 64]).unwrap();
    assert_eq!(psp.calls, 4);
    assert!(psp.requests.windows(2).all(|w| w[0] == w[1]));
    // 2 s between resends, as Linux's sev-guest.
    assert_eq!(psp.request_times, [0, 2_000, 4_000, 6_000]);
    assert_eq!(m.last_seqno(), 2);
    assert!(m.is_usable());
    // The next request goes out at once: the back-off is per request.
    m.attestation_report(&mut psp, [8; 64]).unwrap();
    assert_eq!(psp.request_times[4], 6_000);
}

#[test]
fn busy_for_60_seconds_gives_up_and_wipes() {
    let mut psp = Psp::new();
    psp.reply = Reply::BusyThenGood(u32::MAX);
    let mut m = messenger();
    assert_eq!(
        m.attestation_report(&mut psp, [7; 64]),
        Err(GuestMsgError::Busy)
    );
    // Requests at 0, 2, ..., 60 s: 31 in all, then the key goes.
    let expected: Vec<u64> = (0..=30).map(|i| i * BUSY_RETRY_DELAY_MS).collect();
    assert_eq!(psp.request_times, expected);
    assert_eq!(psp.now_ms, BUSY_TIMEOUT_MS);
    assert!(psp.requests.windows(2).all(|w| w[0] == w[1]));
    assert_wiped(&mut m, &mut psp);
    // Busy on the last try but one: answered in time, key kept.
    let mut psp = Psp::new();
    psp.reply = Reply::BusyThenGood(30);
    let mut m = messenger();
    m.attestation_report(&mut psp, [7; 64]).unwrap();
    assert_eq!(psp.calls, 31);
    assert!(m.is_usable());
}

#[test]
fn report_request_names_the_vcek() {
    // ABI spec 1.55 MSG_REPORT_REQ: REPORT_DATA 0x00..0x40, VMPL 0x40, KEY_SEL 0x44
    // (bits 1:0; 1 = VCEK, 2 = VLEK, 0 = either), reserved 0x48..0x60.
    let r = ReportRequest::vcek([0xAB; 64]);
    let p = r.encode();
    assert_eq!(p.len(), 0x60);
    assert_eq!(&p[..64], &[0xAB; 64]);
    assert_eq!(&p[0x40..0x44], &[0, 0, 0, 0]);
    assert_eq!(&p[0x44..0x48], &[1, 0, 0, 0]);
    assert!(p[0x48..].iter().all(|&b| b == 0));
    let vlek = ReportRequest {
        key_sel: KeySel::Vlek,
        vmpl: 2,
        ..r
    }
    .encode();
    assert_eq!(&vlek[0x40..0x48], &[2, 0, 0, 0, 2, 0, 0, 0]);
    let either = ReportRequest {
        key_sel: KeySel::Either,
        ..r
    }
    .encode();
    assert_eq!(&either[0x44..0x48], &[0, 0, 0, 0]);
    // What the PSP decrypts from attestation_report is exactly that payload.
    let mut psp = Psp::new();
    messenger()
        .attestation_report(&mut psp, [0xAB; 64])
        .unwrap();
    assert_eq!(psp.last_request_payload, p.to_vec());
    let mut psp = Psp::new();
    messenger()
        .report(
            &mut psp,
            &ReportRequest {
                key_sel: KeySel::Vlek,
                ..r
            },
        )
        .unwrap();
    assert_eq!(&psp.last_request_payload[0x44..0x48], &[2, 0, 0, 0]);
}

#[test]
fn sequence_wrap_is_refused() {
    // The last usable exchange: request MAX-1, response MAX.
    let mut psp = Psp::new();
    psp.counter = u64::MAX - 2;
    let mut m = GuestMessenger::with_seqno(Vmpck::new(KEY, 0).unwrap(), u64::MAX - 2);
    m.attestation_report(&mut psp, [0; 64]).unwrap();
    assert_eq!(m.last_seqno(), u64::MAX);
    assert_eq!(
        m.attestation_report(&mut psp, [0; 64]),
        Err(GuestMsgError::SequenceExhausted)
    );
    assert_wiped(&mut m, &mut psp);
    // One short of room for the response: refused before anything is sent.
    let mut psp = Psp::new();
    let mut m = GuestMessenger::with_seqno(Vmpck::new(KEY, 0).unwrap(), u64::MAX - 1);
    assert_eq!(
        m.attestation_report(&mut psp, [0; 64]),
        Err(GuestMsgError::SequenceExhausted)
    );
    assert_eq!(psp.calls, 0);
    assert!(!m.is_usable());
}

#[test]
fn random_and_mutated_responses_never_panic() {
    struct Random(u64, [u8; 4096]);
    impl GuestRequestTransport for Random {
        fn guest_request(
            &mut self,
            _r: &[u8; 4096],
            resp: &mut [u8; 4096],
        ) -> Result<u64, GhcbError> {
            resp.copy_from_slice(&self.1);
            Ok(if self.0 & 3 == 0 { self.0 } else { 0 })
        }
        fn wait_ms(&mut self, _ms: u64) {}
    }
    let mut x = 0x1234_5678_9ABC_DEF1u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..2000 {
        let mut page = [0u8; 4096];
        // Mostly plausible headers (so deeper checks run), sometimes pure noise.
        for b in page.iter_mut() {
            *b = next() as u8;
        }
        if round % 2 == 0 {
            page[0x20..0x28].copy_from_slice(&2u64.to_le_bytes());
            page[0x28..0x30].fill(0);
            page[16..32].fill(0);
            page[0x30] = 1;
            page[0x31] = 1;
            page[0x32..0x34].copy_from_slice(&[0x60, 0]);
            page[0x34] = 6;
            page[0x35] = 1;
            page[0x38..0x3C].fill(0);
            page[0x3C] = 0;
            page[0x3D..0x60].fill(0);
        }
        let mut m = messenger();
        let r = m.attestation_report(&mut Random(next(), page), [0; 64]);
        assert!(r.is_err());
        assert!(!m.is_usable());
    }
    // Authentic responses with random payload contents and sizes reach the payload parsers.
    for _ in 0..500 {
        let len = (next() % 4001) as usize;
        let mut payload = vec![0u8; len];
        for b in payload.iter_mut() {
            *b = next() as u8;
        }
        if len >= 8 && next() & 1 == 0 {
            payload[0..4].fill(0);
        }
        let _ = parse_report_response(&payload);
        let _ = parse_key_response(&payload);
        let mut page = [0u8; 4096];
        let hdr = MsgHeader {
            seqno: 2,
            msg_type: 6,
            msg_version: 1,
            msg_sz: len as u16,
            vmpck: 0,
        };
        seal_message(&KEY, &hdr, &payload, &mut page).unwrap();
        let expected = MsgHeader {
            msg_sz: REPORT_RSP_SIZE as u16,
            ..hdr
        };
        match open_message(&KEY, &expected, &mut page) {
            Ok(n) => {
                assert!(n >= REPORT_RSP_SIZE);
                assert_eq!(&page[0x60..0x60 + n], &payload[..]);
            }
            Err(e) => assert_eq!(e, GuestMsgError::BadHeader),
        }
    }
}

/// Real attestation reports (omega_test_support::snp) as the payload of a simulated
/// MSG_REPORT_RSP: shows the sizes and offsets fit end to end.
#[test]
fn real_report_through_simulated_response() {
    use crate::report;
    let mut seen = 0;
    for v in omega_test_support::snp::real_vectors() {
        let bytes = v.report;
        assert_eq!(bytes.len(), REPORT_LEN, "{}", v.name);
        let mut psp = Psp::new();
        psp.report = bytes.clone();
        let mut m = messenger();
        let report_data: [u8; 64] = bytes[report::REPORT_DATA].try_into().unwrap();
        let r = m.attestation_report(&mut psp, report_data).unwrap();
        assert_eq!(&r[..], &bytes[..]);
        let at = report::VERSION;
        let version = u32::from_le_bytes(r[at..at + 4].try_into().unwrap());
        assert!(
            report::SUPPORTED_VERSIONS.contains(&version),
            "{}: version {version}",
            v.name
        );
        assert_eq!(&r[report::REPORT_DATA], &report_data);
        seen += 1;
    }
    assert!(seen > 0);
    println!("parsed {seen} real report(s) through simulated MSG_REPORT_RSP");
}
