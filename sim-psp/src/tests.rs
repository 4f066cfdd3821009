//! The message protocol against the guest's own messenger. That the reports verify under
//! the lab chain (TCB, chip id, roots) is tested where the verifier lives:
//! `measurements/tests/sim_psp.rs`.

use super::*;
use p384::ecdsa::signature::Verifier as _;
use sev_snp::ghcb::GhcbError;
use sev_snp::guest_msg::{
    DerivedKeyRequest, GuestMessenger, GuestRequestTransport, open_message, seal_message,
};
use sev_snp::{Vmpck, lab};

const MEASUREMENT: [u8; 48] = [0x5A; 48];

/// The guest's transport, answered by a [`SimPsp`] (what the launcher does over the
/// channel). Records the last request so tests can replay or tamper with it.
struct Wire {
    psp: SimPsp,
    last_request: Vec<u8>,
}

impl GuestRequestTransport for Wire {
    fn guest_request(
        &mut self,
        request: &[u8; MSG_PAGE_SIZE],
        response: &mut [u8; MSG_PAGE_SIZE],
    ) -> Result<u64, GhcbError> {
        self.last_request = request.to_vec();
        match self.psp.handle(request) {
            Ok(r) => {
                response[..r.len()].copy_from_slice(&r);
                Ok(0)
            }
            Err(_) => Ok(u64::from(STATUS_INVALID_PARAM)),
        }
    }

    fn wait_ms(&mut self, _ms: u64) {}
}

fn messenger() -> GuestMessenger {
    GuestMessenger::new(Vmpck::new(lab::VMPCK0, 0).unwrap())
}

fn wire(psp: SimPsp) -> Wire {
    Wire {
        psp,
        last_request: Vec::new(),
    }
}

/// The report's signature (AMD's little-endian R/S layout) verifies with the lab VCEK key.
fn signature_verifies(psp: &SimPsp, report: &[u8]) -> bool {
    let be = |f: core::ops::Range<usize>| {
        assert!(report[f.start + 48..f.end].iter().all(|&b| b == 0));
        let mut v: Vec<u8> = report[f.start..f.start + 48].to_vec();
        v.reverse();
        v
    };
    let (r, s) = (be(layout::SIGNATURE_R), be(layout::SIGNATURE_S));
    let sig = Signature::from_scalars(
        *p384::FieldBytes::from_slice(&r),
        *p384::FieldBytes::from_slice(&s),
    )
    .unwrap();
    psp.vcek
        .verifying_key()
        .verify(&report[..layout::SIGNED_LEN], &sig)
        .is_ok()
}

fn u32_at(r: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(r[at..at + 4].try_into().unwrap())
}

fn u64_at(r: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(r[at..at + 8].try_into().unwrap())
}

#[test]
fn guest_messenger_round_trip_and_report_verifies() {
    let mut w = wire(SimPsp::new(MEASUREMENT));
    let mut g = messenger();
    for i in 1..=3u8 {
        let rd = [i; 64];
        let report = g.attestation_report(&mut w, rd).unwrap();
        assert_eq!(g.last_seqno(), 2 * u64::from(i));
        assert_eq!(w.psp.last_seqno(), g.last_seqno());
        assert!(signature_verifies(&w.psp, &report));
        assert_eq!(&report[layout::REPORT_DATA], &rd);
        assert_eq!(&report[layout::MEASUREMENT], &MEASUREMENT);
        assert_eq!(&report[layout::CHIP_ID], &lab::CHIP_ID);
        assert_eq!(u32_at(&report, layout::VERSION), LAB_REPORT_VERSION);
        assert_eq!(u64_at(&report, layout::POLICY), LAB_POLICY);
        assert_eq!(u32_at(&report, layout::VMPL), 0);
        assert_eq!(u32_at(&report, layout::SIGNATURE_ALGO), 1);
        assert_eq!(u64_at(&report, layout::REPORTED_TCB), LAB_TCB);
        // Any change to the signed bytes breaks the signature.
        let mut bad = report;
        bad[layout::MEASUREMENT.start] ^= 1;
        assert!(!signature_verifies(&w.psp, &bad));
    }
}

#[test]
fn tampered_request_refused_and_counter_kept() {
    let mut w = wire(SimPsp::new(MEASUREMENT));
    messenger().attestation_report(&mut w, [1; 64]).unwrap();
    let good = w.last_request.clone();
    // A fresh guest counter would not match; rebuild the same request at seqno 3.
    let mut psp = SimPsp::new(MEASUREMENT);
    psp.handle(&good).unwrap();
    let mut next = [0u8; MSG_PAGE_SIZE];
    let hdr = MsgHeader {
        seqno: 3,
        msg_type: msg_type::REPORT_REQ,
        msg_version: 1,
        msg_sz: REPORT_REQ_SIZE as u16,
        vmpck: 0,
    };
    let payload = guest_msg::ReportRequest::vcek([2; 64]).encode();
    seal_message(&lab::VMPCK0, &hdr, &payload, &mut next).unwrap();
    // Payload, tag and authenticated header bytes: every flip is refused.
    for at in [0x00, 0x0F, 0x34, 0x36, 0x60, 0x60 + REPORT_REQ_SIZE - 1] {
        let mut bad = next;
        bad[at] ^= 1;
        assert!(psp.handle(&bad).is_err(), "flip at {at:#x}");
        assert_eq!(psp.last_seqno(), 2);
    }
    // A request sealed with another key.
    let mut other = [0u8; MSG_PAGE_SIZE];
    seal_message(&[0x99; 32], &hdr, &payload, &mut other).unwrap();
    assert_eq!(
        psp.handle(&other),
        Err(SimPspError::Refused(GuestMsgError::AuthFailed))
    );
    // Truncated below its MSG_SZ, or no header at all.
    assert!(matches!(
        psp.handle(&next[..MSG_HDR_SIZE + 4]),
        Err(SimPspError::Length(_))
    ));
    assert!(matches!(psp.handle(&[]), Err(SimPspError::Length(0))));
    // The untampered request still goes through.
    let resp = psp.handle(&next[..MSG_HDR_SIZE + REPORT_REQ_SIZE]).unwrap();
    assert_eq!(psp.last_seqno(), 4);
    let mut page = [0u8; MSG_PAGE_SIZE];
    page[..resp.len()].copy_from_slice(&resp);
    let expected = MsgHeader {
        seqno: 4,
        msg_type: msg_type::REPORT_RSP,
        msg_version: 1,
        msg_sz: REPORT_RSP_SIZE as u16,
        vmpck: 0,
    };
    let len = open_message(&lab::VMPCK0, &expected, &mut page).unwrap();
    let report = guest_msg::parse_report_response(&page[MSG_HDR_SIZE..MSG_HDR_SIZE + len]).unwrap();
    assert_eq!(&report[layout::REPORT_DATA], &[2; 64]);
}

#[test]
fn replayed_or_skipped_seqno_refused() {
    let mut w = wire(SimPsp::new(MEASUREMENT));
    let mut g = messenger();
    g.attestation_report(&mut w, [1; 64]).unwrap();
    let first = w.last_request.clone();
    assert_eq!(
        w.psp.handle(&first),
        Err(SimPspError::Refused(GuestMsgError::WrongSeqno {
            expected: 3,
            got: 1
        }))
    );
    // A guest that skips ahead (seqno 5 instead of 3) is refused too.
    let mut ahead = GuestMessenger::with_seqno(Vmpck::new(lab::VMPCK0, 0).unwrap(), 4);
    assert!(ahead.attestation_report(&mut w, [2; 64]).is_err());
    assert_eq!(w.psp.last_seqno(), 2);
    // The guest in step continues.
    g.attestation_report(&mut w, [3; 64]).unwrap();
    assert_eq!(w.psp.last_seqno(), 4);
}

#[test]
fn unserved_requests_get_a_firmware_status() {
    let mut w = wire(SimPsp::new(MEASUREMENT));
    let mut g = messenger();
    assert_eq!(
        g.derived_key(&mut w, &DerivedKeyRequest::default())
            .unwrap_err(),
        GuestMsgError::FirmwareStatus(STATUS_INVALID_PARAM)
    );
    // VLEK signing: none installed.
    let vlek = guest_msg::ReportRequest {
        report_data: [0; 64],
        vmpl: 0,
        key_sel: guest_msg::KeySel::Vlek,
    };
    assert_eq!(
        g.report(&mut w, &vlek).unwrap_err(),
        GuestMsgError::FirmwareStatus(STATUS_INVALID_PARAM)
    );
    assert!(g.is_usable());
    // An unknown message type (CPUID_REQ is not served): status in a sealed response.
    let mut req = [0u8; MSG_PAGE_SIZE];
    let hdr = MsgHeader {
        seqno: g.last_seqno() + 1,
        msg_type: msg_type::CPUID_REQ,
        msg_version: 1,
        msg_sz: 16,
        vmpck: 0,
    };
    seal_message(&lab::VMPCK0, &hdr, &[0; 16], &mut req).unwrap();
    let resp = w.psp.handle(&req).unwrap();
    let mut page = [0u8; MSG_PAGE_SIZE];
    page[..resp.len()].copy_from_slice(&resp);
    let expected = MsgHeader {
        seqno: hdr.seqno + 1,
        msg_type: msg_type::CPUID_RSP,
        msg_version: 1,
        msg_sz: 4,
        vmpck: 0,
    };
    let len = open_message(&lab::VMPCK0, &expected, &mut page).unwrap();
    assert_eq!(
        &page[MSG_HDR_SIZE..MSG_HDR_SIZE + 4],
        &STATUS_INVALID_PARAM.to_le_bytes()
    );
    assert_eq!(len, 0x20);
}

#[test]
fn policy_variants_are_signed_as_given() {
    for policy in [LAB_POLICY | 1 << 19, LAB_POLICY | 1 << 18] {
        let psp = SimPsp::with_policy(MEASUREMENT, policy);
        let report = psp.report([0; 64], 0);
        assert!(signature_verifies(&psp, &report));
        assert_eq!(u64_at(&report, layout::POLICY), policy);
    }
}
