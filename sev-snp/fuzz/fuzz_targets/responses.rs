//! Host-controlled responses: guest message responses (header checks, decrypt, payload
//! parsers), GHCB field reads after an exit, and page state change answers.
//!
//! Input layout: byte 0 selects the mode, the rest is the host's data.
//! - mode % 4 == 0: the rest is a raw response page (+ SW_EXITINFO2) for a report request.
//! - mode % 4 == 1: the rest is a payload the fuzzer-PSP seals *correctly* under the key
//!   (so the payload parsers and size checks behind authentication are reached), with header
//!   fields taken from the input.
//! - mode % 4 == 2: the rest is a GHCB page after an exit; every reader runs over it.
//! - mode % 4 == 3: the rest is the shared buffer after a PSC exit for a fixed descriptor.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sev_snp::ghcb::{Field, GHCB_SIZE, Ghcb, GhcbError, SHARED_BUFFER_LEN};
use sev_snp::guest_msg::{self, GuestMessenger, GuestRequestTransport, MSG_PAGE_SIZE, MsgHeader};
use sev_snp::psc::PscDescriptor;
use sev_snp::{DerivedKeyRequest, PageSize, PageState, Vmpck};

const KEY: [u8; 32] = [0x42; 32];

struct Host<'a> {
    info2: u64,
    page: &'a [u8],
    calls: u32,
}

impl GuestRequestTransport for Host<'_> {
    fn guest_request(
        &mut self,
        _req: &[u8; MSG_PAGE_SIZE],
        resp: &mut [u8; MSG_PAGE_SIZE],
    ) -> Result<u64, GhcbError> {
        self.calls += 1;
        let n = self.page.len().min(MSG_PAGE_SIZE);
        resp.fill(0);
        resp[..n].copy_from_slice(&self.page[..n]);
        Ok(self.info2)
    }

    fn wait_ms(&mut self, _ms: u64) {}
}

fn fill<const N: usize>(data: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = data.len().min(N);
    out[..n].copy_from_slice(&data[..n]);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            let info2 = u64::from_le_bytes(fill::<8>(rest));
            let page = rest.get(8..).unwrap_or(&[]);
            let mut m = GuestMessenger::with_seqno(Vmpck::new(KEY, 0).unwrap(), 0);
            let mut host = Host {
                info2: info2 & 0x3_0000_00FF,
                page,
                calls: 0,
            };
            let r = if mode & 0x80 == 0 {
                m.attestation_report(&mut host, [0; 64]).map(|_| ())
            } else {
                m.derived_key(&mut host, &DerivedKeyRequest::default())
                    .map(|_| ())
            };
            // Without the key nobody can forge a response: every raw page must be refused,
            // and a refusal of the header or tag must leave the messenger without its key.
            assert!(r.is_err());
            assert!(!m.is_usable() || matches!(r, Err(guest_msg::GuestMsgError::Disabled)));
        }
        1 => {
            let hdr_bytes = fill::<4>(rest);
            let payload = rest.get(4..).unwrap_or(&[]);
            let payload = &payload[..payload.len().min(guest_msg::MSG_PAYLOAD_MAX)];
            let hdr = MsgHeader {
                seqno: 2 + (hdr_bytes[0] & 1) as u64,
                msg_type: if hdr_bytes[1] & 1 == 0 { 6 } else { 4 },
                msg_version: 1 + (hdr_bytes[2] & 1),
                msg_sz: payload.len() as u16,
                vmpck: hdr_bytes[3] & 1,
            };
            let mut page = [0u8; MSG_PAGE_SIZE];
            guest_msg::seal_message(&KEY, &hdr, payload, &mut page).unwrap();
            let mut m = GuestMessenger::new(Vmpck::new(KEY, 0).unwrap());
            let mut host = Host {
                info2: 0,
                page: &page,
                calls: 0,
            };
            let good_header = hdr.seqno == 2 && hdr.msg_version == 1 && hdr.vmpck == 0;
            if hdr.msg_type == 6 {
                if let Ok(report) = m.attestation_report(&mut host, [0; 64]) {
                    assert!(good_header);
                    assert_eq!(&report[..], &payload[0x20..0x20 + report.len()]);
                }
            } else if let Ok(key) = m.derived_key(&mut host, &DerivedKeyRequest::default()) {
                assert!(good_header);
                assert_eq!(key.as_bytes(), &payload[0x20..0x40]);
            }
            let _ = guest_msg::parse_report_response(payload);
            let _ = guest_msg::parse_key_response(payload);
        }
        2 => {
            let mut page = fill::<GHCB_SIZE>(rest);
            let g = Ghcb::new(&mut page);
            let _ = g.finish_cpuid(2);
            let _ = g.finish_io_in(2, 1);
            let _ = g.finish_io_in(2, 4);
            let _ = g.finish_io_out(2);
            let _ = g.finish_mmio_write(2);
            let mut out = [0u8; 8];
            let _ = g.finish_mmio_read(2, &mut out);
            let _ = g.finish_guest_request(2);
            for f in [
                Field::Rax,
                Field::Rbx,
                Field::Rcx,
                Field::Rdx,
                Field::SwExitInfo1,
                Field::SwExitInfo2,
                Field::SwScratch,
            ] {
                if let Ok(v) = g.get(f) {
                    assert!(g.is_valid(f));
                    let _ = v;
                }
            }
        }
        _ => {
            let buf = fill::<SHARED_BUFFER_LEN>(rest.get(8..).unwrap_or(&[]));
            let info2 = u64::from_le_bytes(fill::<8>(rest)) & 1;
            let mut d = PscDescriptor::new();
            d.push(0x20_0000, PageSize::Size2M, PageState::Shared)
                .unwrap();
            d.push(0x40_0000, PageSize::Size4K, PageState::Private)
                .unwrap();
            d.push(0x40_1000, PageSize::Size4K, PageState::Private)
                .unwrap();
            let before: Vec<_> = d.entries().to_vec();
            if d.check_response(&buf, info2).is_ok() {
                // Accepted answers never change what we asked for, only progress.
                for (a, b) in before.iter().zip(d.entries()) {
                    assert_eq!((a.gfn, a.state, a.size), (b.gfn, b.state, b.size));
                    assert!(b.cur_page >= a.cur_page);
                }
            }
        }
    }
});
