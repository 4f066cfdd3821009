//! The GPU's attestation report as NVML returns it: the SPDM 1.1 GET_MEASUREMENTS request the
//! driver sent (37 bytes, with the requester's nonce) followed by the MEASUREMENTS response the
//! GPU signed (DMTF DSP0274 1.1.x, §10.11). The signature covers the request and the response
//! up to the signature, so the requester's nonce is signed although it is in the request.
//!
//! [`Report::parse`] is strict: every length field must match the bytes exactly, measurement
//! block indices are unique and ascending, opaque fields (NVIDIA's `type u16 ‖ size u16 ‖
//! data` list) are unique by type and fill the opaque area exactly, and nothing follows the
//! signature. A report two parsers could read differently is refused.

use alloc::vec::Vec;

use crate::GpuEvidenceError as E;

/// SPDM version 1.1 (the only one Hopper's GSP answers with, and the one whose signature has
/// no 1.2-style signing prefix).
pub const SPDM_VERSION_1_1: u8 = 0x11;
/// GET_MEASUREMENTS request code.
pub const GET_MEASUREMENTS: u8 = 0xE0;
/// MEASUREMENTS response code.
pub const MEASUREMENTS: u8 = 0x60;
/// The request's length: version, code, param1, param2, nonce (32), slot id.
pub const REQUEST_LEN: usize = 37;
/// An SPDM nonce.
pub const NONCE_LEN: usize = 32;
/// ECDSA P-384 signature, `r ‖ s` big-endian (TPM_ALG_ECDSA_ECC_NIST_P384).
pub const SIGNATURE_LEN: usize = 96;
/// The largest report parsed (Hopper's is about 4 KiB; NVML's buffer is 8 KiB).
pub const MAX_REPORT: usize = 32 * 1024;
/// Measurement specification: DMTF (bit 0).
pub const MEASUREMENT_SPEC_DMTF: u8 = 1;
/// Opaque field type of the firmware ID (NVIDIA's OPAQUE_FIELD_ID_FWID).
pub const OPAQUE_FWID: u16 = 20;
/// Opaque field type of the driver version (NUL-terminated ASCII).
pub const OPAQUE_DRIVER_VERSION: u16 = 3;
/// Opaque field type of the VBIOS version (8 bytes, little-endian groups).
pub const OPAQUE_VBIOS_VERSION: u16 = 6;

/// One DMTF measurement block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measurement<'a> {
    /// SPDM index (1-based; NVIDIA's reference manifests count from 0: RIM index `i` is SPDM
    /// index `i + 1`).
    pub index: u8,
    /// DMTFSpecMeasurementValueType (bit 7: raw bit stream rather than a digest).
    pub value_type: u8,
    /// The measurement (a SHA-384 digest on Hopper).
    pub value: &'a [u8],
}

/// One field of NVIDIA's opaque data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpaqueField<'a> {
    /// The field type (e.g. [`OPAQUE_FWID`]).
    pub field_type: u16,
    /// Its bytes.
    pub data: &'a [u8],
}

/// A parsed attestation report (borrowing the input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report<'a> {
    /// SPDM version of request and response (equal).
    pub spdm_version: u8,
    /// The requester's nonce (what the verifier's nonce must equal).
    pub requester_nonce: [u8; NONCE_LEN],
    /// The request's slot id (which certificate chain slot signs).
    pub slot_id: u8,
    /// The GPU's own nonce (in the response).
    pub responder_nonce: [u8; NONCE_LEN],
    /// The measurement blocks, in ascending index order.
    pub measurements: Vec<Measurement<'a>>,
    /// The opaque fields, in their order in the report.
    pub opaque: Vec<OpaqueField<'a>>,
    /// Request ‖ response without the signature: the signed message.
    pub signed: &'a [u8],
    /// The signature, `r ‖ s`.
    pub signature: &'a [u8; SIGNATURE_LEN],
}

/// A cursor over the report that names the field it was reading when bytes ran out.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], E> {
        let end = self.pos.checked_add(n).ok_or(E::Truncated { field })?;
        let out = self
            .bytes
            .get(self.pos..end)
            .ok_or(E::Truncated { field })?;
        self.pos = end;
        Ok(out)
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, E> {
        Ok(self.take(1, field)?[0])
    }
    fn u16le(&mut self, field: &'static str) -> Result<u16, E> {
        let b = self.take(2, field)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u24le(&mut self, field: &'static str) -> Result<usize, E> {
        let b = self.take(3, field)?;
        Ok(usize::from(b[0]) | usize::from(b[1]) << 8 | usize::from(b[2]) << 16)
    }
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], E> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }
    fn rest(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }
}

impl<'a> Report<'a> {
    /// Parses NVML's attestation report (request ‖ response), strictly (see the module docs).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, E> {
        if bytes.len() > MAX_REPORT {
            return Err(E::TooLarge {
                what: "attestation report",
                len: bytes.len(),
                max: MAX_REPORT,
            });
        }
        let mut r = Reader { bytes, pos: 0 };
        // The request.
        let version = r.u8("request version")?;
        if version != SPDM_VERSION_1_1 {
            return Err(E::SpdmVersion(version));
        }
        let code = r.u8("request code")?;
        if code != GET_MEASUREMENTS {
            return Err(E::RequestCode(code));
        }
        let param1 = r.u8("request param1")?;
        // SECURITY: without bit 0 the GPU was not asked to sign; such a response carries no
        // signature and proves nothing.
        if param1 & 1 == 0 {
            return Err(E::SignatureNotRequested);
        }
        let param2 = r.u8("request param2")?;
        if param2 != 0xFF {
            return Err(E::NotAllMeasurements(param2));
        }
        let requester_nonce = r.array::<NONCE_LEN>("request nonce")?;
        let slot_id = r.u8("request slot id")?;
        debug_assert_eq!(r.pos, REQUEST_LEN);

        // The response.
        let response_version = r.u8("response version")?;
        if response_version != version {
            return Err(E::SpdmVersion(response_version));
        }
        let code = r.u8("response code")?;
        if code != MEASUREMENTS {
            return Err(E::ResponseCode(code));
        }
        r.take(2, "response params")?;
        let number_of_blocks = r.u8("number of blocks")?;
        if number_of_blocks == 0 {
            return Err(E::NoMeasurements);
        }
        let record_len = r.u24le("measurement record length")?;
        let record = r.take(record_len, "measurement record")?;
        let measurements = parse_record(record, number_of_blocks)?;
        let responder_nonce = r.array::<NONCE_LEN>("response nonce")?;
        let opaque_len = usize::from(r.u16le("opaque length")?);
        let opaque = parse_opaque(r.take(opaque_len, "opaque data")?)?;
        let signed_len = r.pos;
        let signature = r.take(SIGNATURE_LEN, "signature")?;
        if r.rest() != 0 {
            return Err(E::TrailingBytes(r.rest()));
        }
        let signature: &[u8; SIGNATURE_LEN] = signature
            .try_into()
            .map_err(|_| E::Truncated { field: "signature" })?;
        Ok(Report {
            spdm_version: version,
            requester_nonce,
            slot_id,
            responder_nonce,
            measurements,
            opaque,
            signed: &bytes[..signed_len],
            signature,
        })
    }

    /// The opaque field of this type (types are unique in a parsed report).
    pub fn opaque(&self, field_type: u16) -> Option<&'a [u8]> {
        self.opaque
            .iter()
            .find(|f| f.field_type == field_type)
            .map(|f| f.data)
    }

    /// The measurement block with this SPDM index.
    pub fn measurement(&self, index: u8) -> Option<&Measurement<'a>> {
        self.measurements.iter().find(|m| m.index == index)
    }

    /// The driver version string, when the report has one (NUL padding removed).
    pub fn driver_version(&self) -> Option<&'a str> {
        let raw = self.opaque(OPAQUE_DRIVER_VERSION)?;
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        core::str::from_utf8(&raw[..end]).ok()
    }
}

fn parse_record(record: &[u8], number_of_blocks: u8) -> Result<Vec<Measurement<'_>>, E> {
    let mut r = Reader {
        bytes: record,
        pos: 0,
    };
    let mut out: Vec<Measurement<'_>> = Vec::with_capacity(usize::from(number_of_blocks));
    for _ in 0..number_of_blocks {
        let index = r.u8("measurement index")?;
        let spec = r.u8("measurement specification")?;
        if spec != MEASUREMENT_SPEC_DMTF {
            return Err(E::MeasurementSpec { index, spec });
        }
        let size = usize::from(r.u16le("measurement size")?);
        let mut m = Reader {
            bytes: r.take(size, "measurement")?,
            pos: 0,
        };
        let value_type = m.u8("measurement value type")?;
        let value_size = usize::from(m.u16le("measurement value size")?);
        let value = m.take(value_size, "measurement value")?;
        if m.rest() != 0 {
            return Err(E::MeasurementSize { index });
        }
        // SECURITY: a repeated index would let two readers of the report compare different
        // values for one index; ascending order is what SPDM prescribes.
        if out.last().is_some_and(|last| last.index >= index) {
            return Err(E::MeasurementIndexOrder(index));
        }
        out.push(Measurement {
            index,
            value_type,
            value,
        });
    }
    if r.rest() != 0 {
        return Err(E::MeasurementRecordLength {
            blocks: number_of_blocks,
            extra: r.rest(),
        });
    }
    Ok(out)
}

fn parse_opaque(data: &[u8]) -> Result<Vec<OpaqueField<'_>>, E> {
    let mut r = Reader {
        bytes: data,
        pos: 0,
    };
    let mut out: Vec<OpaqueField<'_>> = Vec::new();
    while r.rest() != 0 {
        let field_type = r.u16le("opaque field type")?;
        let size = usize::from(r.u16le("opaque field size")?);
        let data = r.take(size, "opaque field")?;
        // SECURITY: one FWID (or driver version) only; a second one could be the one another
        // verifier reads.
        if out.iter().any(|f| f.field_type == field_type) {
            return Err(E::DuplicateOpaqueField(field_type));
        }
        out.push(OpaqueField { field_type, data });
    }
    Ok(out)
}
