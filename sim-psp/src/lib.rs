//! A software SEV-SNP PSP for tests ("simulated PSP").
//!
//! It answers the guest messages a test-hooks monitor sends (through the launcher) the way
//! the PSP firmware would: the request is authenticated and decrypted with VMPCK0
//! (`sev_snp::lab::VMPCK0`, public), its sequence number must be the next one, and a
//! `MSG_REPORT_REQ` gets a `MSG_REPORT_RSP` with a report in the real layout
//! (`sev_snp::report`), signed ECDSA P-384/SHA-384 by a lab VCEK whose chain (lab ARK →
//! lab ASK → lab VCEK) is shaped like AMD's. What it proves and what it does not:
//! docs/sev-snp.md, "The simulated PSP".
//!
//! Everything here is public, keys included (see `lab/README.md`): evidence made with it
//! says `tee: simulated`, and verifiers accept the lab chain only with `--lab-root`.

use p384::ecdsa::signature::Signer as _;
use p384::ecdsa::{Signature, SigningKey};
use p384::pkcs8::DecodePrivateKey as _;
use sev_snp::guest_msg::{
    self, GuestMsgError, MSG_HDR_SIZE, MSG_PAGE_SIZE, MSG_SZ_OFFSET, MSG_TYPE_OFFSET,
    MSG_VERSION_OFFSET, MsgHeader, REPORT_REQ_SIZE, REPORT_RSP_SIZE, msg_type,
};
use sev_snp::report as layout;
use sha2::Digest as _;

/// The lab root (ARK) certificate, PEM. Not an AMD root. (The lab certificates are
/// `omega_snp_verify::lab`'s, so that no_std verifiers hold them too.)
pub const LAB_ARK_PEM: &[u8] = omega_snp_verify::lab::ARK_PEM;
/// The lab signing certificate (ASK), PEM, signed by [`LAB_ARK_PEM`].
pub const LAB_ASK_PEM: &[u8] = omega_snp_verify::lab::ASK_PEM;
/// The lab VCEK certificate, DER, signed by [`LAB_ASK_PEM`].
pub const LAB_VCEK_DER: &[u8] = omega_snp_verify::lab::VCEK_DER;
/// The lab VCEK's private key (PKCS#8 PEM). Public by design: anyone can sign "simulated"
/// reports, which is why verifiers accept them only when asked to.
const LAB_VCEK_KEY_PEM: &str = include_str!("../lab/vcek-key.pem");

/// The TCB of the lab platform, Milan layout: boot loader, TEE, SNP, microcode SPLs in
/// bytes 0, 1, 6, 7. Must equal the VCEK's SPL extensions (`lab/make-lab-chain.sh`).
pub const LAB_TCB: u64 = u64::from_le_bytes([3, 0, 0, 0, 0, 0, 20, 209]);
/// The guest policy of [`SimPsp::new`]: bit 16 (SMT allowed) and bit 17 (reserved, one);
/// no debugging, no migration agent.
pub const LAB_POLICY: u64 = 0x30000;
/// Report version produced (3: with the CPUID fields; Milan: family 0x19, model 0x01).
pub const LAB_REPORT_VERSION: u32 = 3;
/// Firmware version (build, minor, major), as `CURRENT_VERSION` stores it.
const LAB_FW_VERSION: [u8; 3] = [21, 55, 1];

/// SNP firmware status `INVALID_PARAM`: the answer to requests the simulated PSP does not
/// serve (unknown message types, key derivation, VLEK signing, VMPL above 3).
pub const STATUS_INVALID_PARAM: u32 = 0x16;

/// Why a request got no response (the real PSP answers these with a failed guest request:
/// the guest's counter stays where it was).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SimPspError {
    /// Shorter than a header, longer than a page, or shorter than its MSG_SZ says.
    #[error("request of {0} bytes is not a guest message")]
    Length(usize),
    /// Wrong sequence number, bad header or failed authentication.
    #[error("request refused: {0}")]
    Refused(#[from] GuestMsgError),
    /// The message counter would wrap.
    #[error("message sequence numbers exhausted")]
    SequenceExhausted,
}

/// One simulated platform: a launched guest's measurement and policy, and the message
/// counter it shares with that guest.
pub struct SimPsp {
    measurement: [u8; 48],
    policy: u64,
    /// The last sequence number used (the last response's); 0 at launch.
    last_seqno: u64,
    vcek: SigningKey,
}

impl SimPsp {
    /// A platform that launched a guest with launch digest `measurement` and policy
    /// [`LAB_POLICY`].
    pub fn new(measurement: [u8; 48]) -> Self {
        Self::with_policy(measurement, LAB_POLICY)
    }

    /// The same with another guest policy (tests of verifiers that must refuse debug or
    /// migration-agent policies).
    pub fn with_policy(measurement: [u8; 48], policy: u64) -> Self {
        let vcek = SigningKey::from_pkcs8_pem(LAB_VCEK_KEY_PEM)
            .expect("lab/vcek-key.pem is a P-384 PKCS#8 key (checked by the tests)");
        Self {
            measurement,
            policy,
            last_seqno: 0,
            vcek,
        }
    }

    /// The last sequence number used (0 before the first request).
    pub fn last_seqno(&self) -> u64 {
        self.last_seqno
    }

    /// Answers one guest message: `request` is the 0x60-byte header and the encrypted
    /// payload (a whole page may follow; bytes past MSG_SZ are ignored). Returns the
    /// response message, header and encrypted payload, sealed with VMPCK0 under sequence
    /// number request + 1.
    pub fn handle(&mut self, request: &[u8]) -> Result<Vec<u8>, SimPspError> {
        if request.len() < MSG_HDR_SIZE || request.len() > MSG_PAGE_SIZE {
            return Err(SimPspError::Length(request.len()));
        }
        let msg_sz = usize::from(u16::from_le_bytes([
            request[MSG_SZ_OFFSET],
            request[MSG_SZ_OFFSET + 1],
        ]));
        if request.len() < MSG_HDR_SIZE + msg_sz {
            return Err(SimPspError::Length(request.len()));
        }
        let (Some(req_seqno), Some(resp_seqno)) = (
            self.last_seqno.checked_add(1),
            self.last_seqno.checked_add(2),
        ) else {
            return Err(SimPspError::SequenceExhausted);
        };
        let mut page = [0u8; MSG_PAGE_SIZE];
        page[..request.len()].copy_from_slice(request);
        let req_type = page[MSG_TYPE_OFFSET];
        let msg_version = page[MSG_VERSION_OFFSET];
        // SECURITY: the guest's own header check and AES-GCM open, with the sequence number
        // this PSP expects: a replayed, reordered or forged request is refused before
        // anything is answered, and the counter does not move.
        let len = guest_msg::open_message(
            &sev_snp::lab::VMPCK0,
            &MsgHeader {
                seqno: req_seqno,
                msg_type: req_type,
                msg_version,
                msg_sz: 0,
                vmpck: 0,
            },
            &mut page,
        )?;
        let payload = &page[MSG_HDR_SIZE..MSG_HDR_SIZE + len];
        let response = match (req_type, msg_version) {
            (msg_type::REPORT_REQ, 1) => self.report_response(payload),
            (msg_type::REPORT_REQ, _) => status_payload(REPORT_RSP_SIZE, STATUS_INVALID_PARAM),
            (msg_type::KEY_REQ, _) => status_payload(guest_msg::KEY_RSP_SIZE, STATUS_INVALID_PARAM),
            _ => status_payload(0x20, STATUS_INVALID_PARAM),
        };
        let mut out = [0u8; MSG_PAGE_SIZE];
        guest_msg::seal_message(
            &sev_snp::lab::VMPCK0,
            &MsgHeader {
                seqno: resp_seqno,
                msg_type: req_type.wrapping_add(1),
                msg_version,
                msg_sz: response.len() as u16,
                vmpck: 0,
            },
            &response,
            &mut out,
        )?;
        self.last_seqno = resp_seqno;
        Ok(out[..MSG_HDR_SIZE + response.len()].to_vec())
    }

    /// The MSG_REPORT_RSP payload for a decrypted MSG_REPORT_REQ payload.
    fn report_response(&self, req: &[u8]) -> Vec<u8> {
        if req.len() < REPORT_REQ_SIZE {
            return status_payload(REPORT_RSP_SIZE, STATUS_INVALID_PARAM);
        }
        let mut report_data = [0u8; 64];
        report_data.copy_from_slice(&req[..64]);
        let vmpl = u32::from_le_bytes([req[0x40], req[0x41], req[0x42], req[0x43]]);
        let key_sel = u32::from_le_bytes([req[0x44], req[0x45], req[0x46], req[0x47]]) & 3;
        // No VLEK is installed: KEY_SEL 0 and 1 sign with the VCEK, 2 fails as on hardware.
        if vmpl > 3 || key_sel > 1 {
            return status_payload(REPORT_RSP_SIZE, STATUS_INVALID_PARAM);
        }
        let report = self.report(report_data, vmpl);
        let mut p = vec![0u8; REPORT_RSP_SIZE];
        p[4..8].copy_from_slice(&(layout::REPORT_LEN as u32).to_le_bytes());
        p[0x20..].copy_from_slice(&report);
        p
    }

    /// A signed report for `report_data` requested at `vmpl` (what a MSG_REPORT_REQ gets).
    pub fn report(&self, report_data: [u8; 64], vmpl: u32) -> [u8; layout::REPORT_LEN] {
        let mut r = [0u8; layout::REPORT_LEN];
        let put32 =
            |r: &mut [u8], at: usize, v: u32| r[at..at + 4].copy_from_slice(&v.to_le_bytes());
        let put64 =
            |r: &mut [u8], at: usize, v: u64| r[at..at + 8].copy_from_slice(&v.to_le_bytes());
        put32(&mut r, layout::VERSION, LAB_REPORT_VERSION);
        put64(&mut r, layout::POLICY, self.policy);
        put32(&mut r, layout::VMPL, vmpl);
        put32(&mut r, layout::SIGNATURE_ALGO, 1);
        put64(&mut r, layout::CURRENT_TCB, LAB_TCB);
        // PLATFORM_INFO bit 0: SMT enabled. FLAGS stay 0: SIGNING_KEY = VCEK, chip id shown.
        put64(&mut r, layout::PLATFORM_INFO, 1);
        r[layout::REPORT_DATA].copy_from_slice(&report_data);
        r[layout::MEASUREMENT].copy_from_slice(&self.measurement);
        // REPORT_ID identifies the guest: derived from its measurement here (random on
        // hardware). REPORT_ID_MA all ones: no migration agent.
        let id = sha2::Sha384::digest(
            [b"omega-sim-psp/report-id\0".as_slice(), &self.measurement].concat(),
        );
        r[layout::REPORT_ID].copy_from_slice(&id[..32]);
        r[layout::REPORT_ID_MA].fill(0xFF);
        put64(&mut r, layout::REPORTED_TCB, LAB_TCB);
        r[layout::CPUID_FAMILY] = 0x19;
        r[layout::CPUID_MODEL] = 0x01;
        r[layout::CPUID_STEPPING] = 0x01;
        r[layout::CHIP_ID].copy_from_slice(&sev_snp::lab::CHIP_ID);
        put64(&mut r, layout::COMMITTED_TCB, LAB_TCB);
        r[layout::CURRENT_VERSION..layout::CURRENT_VERSION + 3].copy_from_slice(&LAB_FW_VERSION);
        r[layout::COMMITTED_VERSION..layout::COMMITTED_VERSION + 3]
            .copy_from_slice(&LAB_FW_VERSION);
        put64(&mut r, layout::LAUNCH_TCB, LAB_TCB);
        let sig: Signature = self.vcek.sign(&r[..layout::SIGNED_LEN]);
        let (sig_r, sig_s) = sig.split_bytes();
        // AMD stores R and S little-endian, zero-padded to 72 bytes.
        for (field, be) in [
            (layout::SIGNATURE_R, sig_r.as_slice()),
            (layout::SIGNATURE_S, sig_s.as_slice()),
        ] {
            for (dst, src) in r[field].iter_mut().zip(be.iter().rev()) {
                *dst = *src;
            }
        }
        r
    }
}

/// A response payload of `size` bytes carrying only a firmware STATUS.
fn status_payload(size: usize, status: u32) -> Vec<u8> {
    let mut p = vec![0u8; size];
    p[..4].copy_from_slice(&status.to_le_bytes());
    p
}

#[cfg(test)]
mod tests;
