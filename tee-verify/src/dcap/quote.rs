//! The TDX quote's bytes (Intel's "TDX DCAP Quoting Library API", quote format v4 and v5):
//! header, TD report, and the ECDSA quote signature data with its QE report certification data.
//! Parsing only: every length is checked against what is left, nothing is trusted yet.

use super::Refused;

pub const TD_REPORT10_LEN: usize = 584;
pub const TD_REPORT15_LEN: usize = 648;
pub const QE_REPORT_LEN: usize = 384;
/// Intel's quoting enclave, the only QE vendor DCAP collateral rates.
pub const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];
const TEE_TYPE_TDX: u32 = 0x81;
const ATTESTATION_KEY_ECDSA_P256: u16 = 2;
const BODY_TD_REPORT10: u16 = 2;
const BODY_TD_REPORT15: u16 = 3;
const CERT_DATA_QE_REPORT: u16 = 6;
const CERT_DATA_PCK_CHAIN: u16 = 5;
/// SECURITY: QE authentication data is a 32-byte value in every Intel QE; a length the host
/// chose is not believed.
pub const QE_AUTH_DATA_LEN: usize = 32;

/// The TD report (TDX module ABI `TDREPORT`'s TDINFO + TEE_TCB_INFO fields the quote carries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdReport {
    pub tee_tcb_svn: [u8; 16],
    pub mr_seam: [u8; 48],
    pub mr_signer_seam: [u8; 48],
    pub seam_attributes: [u8; 8],
    pub td_attributes: [u8; 8],
    pub xfam: [u8; 8],
    pub mr_td: [u8; 48],
    pub mr_config_id: [u8; 48],
    pub mr_owner: [u8; 48],
    pub mr_owner_config: [u8; 48],
    pub rt_mr: [[u8; 48]; 4],
    pub report_data: [u8; 64],
    /// TD 1.5 (quote v5, body type 3): the TCB after TD-preserving module updates, and the
    /// service TD's measurement.
    pub td15: Option<([u8; 16], [u8; 48])>,
}

/// An SGX report body: the quoting enclave's report, signed by the PCK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QeReport {
    pub misc_select: u32,
    pub attributes: [u8; 16],
    pub mr_signer: [u8; 32],
    pub isv_prod_id: u16,
    pub isv_svn: u16,
    pub report_data: [u8; 64],
}

pub struct Quote<'a> {
    /// Header and body (with v5's body descriptor): what the attestation key signed.
    pub signed: &'a [u8],
    pub report: TdReport,
    pub signature: [u8; 64],
    pub attestation_key: [u8; 64],
    pub qe_report_raw: &'a [u8],
    pub qe_report: QeReport,
    pub qe_report_signature: [u8; 64],
    pub qe_auth_data: &'a [u8],
    /// The PCK certificate chain, PEM, leaf first.
    pub pck_chain_pem: &'a [u8],
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Refused> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(Refused("quote is truncated"))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Refused> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u16(&mut self) -> Result<u16, Refused> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, Refused> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn sized_u32(&mut self) -> Result<&'a [u8], Refused> {
        let n = self.u32()?;
        self.take(usize::try_from(n).map_err(|_| Refused("length does not fit"))?)
    }
}

fn array<const N: usize>(s: &[u8], at: usize) -> [u8; N] {
    let mut a = [0; N];
    a.copy_from_slice(&s[at..at + N]);
    a
}

fn td_report(body: &[u8]) -> TdReport {
    // Offsets of TDX module ABI's TD report body (v4 layout); `body` has at least 584 bytes.
    let mut rt_mr = [[0; 48]; 4];
    for (i, r) in rt_mr.iter_mut().enumerate() {
        *r = array(body, 328 + 48 * i);
    }
    TdReport {
        tee_tcb_svn: array(body, 0),
        mr_seam: array(body, 16),
        mr_signer_seam: array(body, 64),
        seam_attributes: array(body, 112),
        td_attributes: array(body, 120),
        xfam: array(body, 128),
        mr_td: array(body, 136),
        mr_config_id: array(body, 184),
        mr_owner: array(body, 232),
        mr_owner_config: array(body, 280),
        rt_mr,
        report_data: array(body, 520),
        td15: (body.len() == TD_REPORT15_LEN).then(|| (array(body, 584), array(body, 600))),
    }
}

fn qe_report(r: &[u8]) -> QeReport {
    QeReport {
        misc_select: u32::from_le_bytes(array(r, 16)),
        attributes: array(r, 48),
        mr_signer: array(r, 128),
        isv_prod_id: u16::from_le_bytes(array(r, 256)),
        isv_svn: u16::from_le_bytes(array(r, 258)),
        report_data: array(r, 320),
    }
}

/// Parses a TDX quote (v4: TD 1.0 body; v5: TD 1.0 or 1.5 body) signed with an ECDSA P-256
/// attestation key and carrying QE report certification data with a PCK chain.
pub fn parse(bytes: &[u8]) -> Result<Quote<'_>, Refused> {
    let mut r = Reader { bytes, at: 0 };
    let version = r.u16()?;
    let key_type = r.u16()?;
    let tee_type = r.u32()?;
    r.take(4)?; // reserved (v4), QE and PCE SVN (informative; the QE report carries them)
    let vendor: [u8; 16] = r.array()?;
    r.take(20)?; // user data
    if tee_type != TEE_TYPE_TDX {
        return Err(Refused("quote is not a TDX quote"));
    }
    if key_type != ATTESTATION_KEY_ECDSA_P256 {
        return Err(Refused("attestation key type is not ECDSA P-256"));
    }
    if vendor != INTEL_QE_VENDOR_ID {
        return Err(Refused("QE vendor is not Intel"));
    }
    let body = match version {
        4 => r.take(TD_REPORT10_LEN)?,
        5 => {
            let body_type = r.u16()?;
            let size = r.u32()?;
            match (body_type, size as usize) {
                (BODY_TD_REPORT10, TD_REPORT10_LEN) => r.take(TD_REPORT10_LEN)?,
                (BODY_TD_REPORT15, TD_REPORT15_LEN) => r.take(TD_REPORT15_LEN)?,
                _ => return Err(Refused("quote body is not a TD 1.0 or 1.5 report")),
            }
        }
        _ => return Err(Refused("quote version is not 4 or 5")),
    };
    let signed = &bytes[..r.at];
    let report = td_report(body);

    let mut sig = Reader {
        bytes: r.sized_u32()?,
        at: 0,
    };
    // Quoting libraries hand out their fixed-size buffer: zero padding may follow, nothing else.
    if bytes[r.at..].iter().any(|&b| b != 0) {
        return Err(Refused("bytes after the quote's signature data"));
    }
    let signature = sig.array()?;
    let attestation_key = sig.array()?;
    if sig.u16()? != CERT_DATA_QE_REPORT {
        return Err(Refused("certification data is not a QE report"));
    }
    let mut cert = Reader {
        bytes: sig.sized_u32()?,
        at: 0,
    };
    if sig.at != sig.bytes.len() {
        return Err(Refused("bytes after the certification data"));
    }
    let qe_report_raw = cert.take(QE_REPORT_LEN)?;
    let qe_report_signature = cert.array()?;
    let auth_len = cert.u16()?;
    let qe_auth_data = cert.take(auth_len as usize)?;
    if qe_auth_data.len() != QE_AUTH_DATA_LEN {
        return Err(Refused("QE authentication data is not 32 bytes"));
    }
    if cert.u16()? != CERT_DATA_PCK_CHAIN {
        return Err(Refused(
            "QE certification data is not a PCK certificate chain",
        ));
    }
    let pck_chain_pem = cert.sized_u32()?;
    if cert.at != cert.bytes.len() {
        return Err(Refused("bytes after the PCK certificate chain"));
    }
    Ok(Quote {
        signed,
        report,
        signature,
        attestation_key,
        qe_report_raw,
        qe_report: qe_report(qe_report_raw),
        qe_report_signature,
        qe_auth_data,
        pck_chain_pem,
    })
}
