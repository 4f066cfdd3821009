//! The PCK certificate's SGX extension (OID 1.2.840.113741.1.13.1, Intel's "PCK Certificate
//! and CRL Profile"): the platform's FMSPC, PCE ID and the TCB (CPU SVN components and PCE
//! SVN) Intel certified it at. Read with a small strict DER walker: the extension is a
//! sequence of (OID, value) pairs, and only the four fields the TCB match needs are kept.

use x509_cert::Certificate;

use super::Refused;

/// DER of OID 1.2.840.113741.1.13.1 (Intel SGX extensions), its content bytes.
const SGX_EXTENSIONS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01];
const TAG_INTEGER: u8 = 0x02;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;

/// What Intel certified this platform at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformTcb {
    pub fmspc: [u8; 6],
    pub pce_id: [u8; 2],
    /// SGX TCB components 1..=16 (the CPU SVN, as Intel splits it).
    pub components: [u8; 16],
    pub pce_svn: u16,
}

/// One DER element: tag and content.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn next(&mut self) -> Result<Option<(u8, &'a [u8])>, Refused> {
        let bad = Refused("SGX extension is not DER");
        let Some((&tag, rest)) = self.rest.split_first() else {
            return Ok(None);
        };
        let (&first, rest) = rest.split_first().ok_or(bad)?;
        let (len, rest) = if first < 0x80 {
            (first as usize, rest)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 3 || rest.len() < n {
                return Err(bad);
            }
            let len = rest[..n].iter().fold(0usize, |l, &b| (l << 8) | b as usize);
            (len, &rest[n..])
        };
        if len > rest.len() {
            return Err(bad);
        }
        let (content, rest) = rest.split_at(len);
        self.rest = rest;
        Ok(Some((tag, content)))
    }

    fn expect(&mut self, tag: u8) -> Result<&'a [u8], Refused> {
        match self.next()? {
            Some((t, c)) if t == tag => Ok(c),
            _ => Err(Refused("SGX extension has an unexpected element")),
        }
    }
}

/// A small non-negative DER INTEGER (an SVN).
fn small_uint(content: &[u8], max: u32) -> Result<u32, Refused> {
    let bad = Refused("SGX extension SVN is not a small non-negative integer");
    let digits = match content {
        [0, rest @ ..] if !rest.is_empty() => rest,
        [] => return Err(bad),
        c => c,
    };
    if digits.len() > 2 || content[0] & 0x80 != 0 {
        return Err(bad);
    }
    let v = digits.iter().fold(0u32, |v, &b| (v << 8) | b as u32);
    if v > max { Err(bad) } else { Ok(v) }
}

/// The OID arc under the SGX extensions' root, e.g. `[2, 17]` for 1.2.840.113741.1.13.1.2.17.
fn sgx_arc(oid: &[u8]) -> Option<&[u8]> {
    oid.strip_prefix(SGX_EXTENSIONS)
}

/// Reads the SGX extension of the PCK leaf certificate.
pub fn platform_tcb(pck: &Certificate) -> Result<PlatformTcb, Refused> {
    use x509_cert::der::oid::ObjectIdentifier;
    const OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1");
    let mut found = None;
    for ext in pck.tbs_certificate.extensions.iter().flatten() {
        if ext.extn_id == OID {
            if found.is_some() {
                return Err(Refused("PCK certificate repeats the SGX extension"));
            }
            found = Some(ext.extn_value.as_bytes());
        }
    }
    let value = found.ok_or(Refused("PCK certificate has no SGX extension"))?;
    let mut outer = Der { rest: value };
    let list = outer.expect(TAG_SEQUENCE)?;
    if !outer.rest.is_empty() {
        return Err(Refused("bytes after the SGX extension"));
    }
    let (mut fmspc, mut pce_id, mut tcb) = (None, None, None);
    let mut entries = Der { rest: list };
    while let Some((tag, entry)) = entries.next()? {
        if tag != TAG_SEQUENCE {
            return Err(Refused("SGX extension entry is not a sequence"));
        }
        let mut e = Der { rest: entry };
        let oid = e.expect(TAG_OID)?;
        let slot = match sgx_arc(oid) {
            Some([2]) => &mut tcb,
            Some([3]) => &mut pce_id,
            Some([4]) => &mut fmspc,
            _ => continue,
        };
        // SECURITY: a repeated field would let two readers see two platforms.
        if slot.is_some() {
            return Err(Refused("SGX extension repeats a field"));
        }
        *slot = Some(e.rest);
    }
    fn octets(v: Option<&[u8]>, n: usize) -> Result<&[u8], Refused> {
        let mut d = Der {
            rest: v.ok_or(Refused("SGX extension lacks FMSPC, PCE ID or TCB"))?,
        };
        let c = d.expect(TAG_OCTET_STRING)?;
        if c.len() != n || !d.rest.is_empty() {
            return Err(Refused("SGX extension FMSPC or PCE ID has the wrong size"));
        }
        Ok(c)
    }
    let mut out = PlatformTcb {
        fmspc: octets(fmspc, 6)?.try_into().expect("6 bytes"),
        pce_id: octets(pce_id, 2)?.try_into().expect("2 bytes"),
        components: [0; 16],
        pce_svn: 0,
    };
    let mut t = Der {
        rest: tcb.ok_or(Refused("SGX extension lacks its TCB"))?,
    };
    let mut levels = Der {
        rest: t.expect(TAG_SEQUENCE)?,
    };
    let mut seen = 0u32;
    while let Some((tag, entry)) = levels.next()? {
        if tag != TAG_SEQUENCE {
            return Err(Refused("SGX TCB entry is not a sequence"));
        }
        let mut e = Der { rest: entry };
        let arc = match sgx_arc(e.expect(TAG_OID)?) {
            Some([2, n]) if (1..=18).contains(n) => *n,
            _ => return Err(Refused("SGX TCB entry has an unknown OID")),
        };
        if seen & (1 << arc) != 0 {
            return Err(Refused("SGX TCB repeats a component"));
        }
        seen |= 1 << arc;
        match arc {
            1..=16 => {
                out.components[arc as usize - 1] = small_uint(e.expect(TAG_INTEGER)?, 255)? as u8
            }
            17 => out.pce_svn = small_uint(e.expect(TAG_INTEGER)?, 65535)? as u16,
            // 18: the raw CPU SVN, the same bytes as components 1..=16.
            _ => {
                e.expect(TAG_OCTET_STRING)?;
            }
        }
        if !e.rest.is_empty() {
            return Err(Refused("bytes after an SGX TCB entry's value"));
        }
    }
    // Components 1..=16 and the PCE SVN must all be present.
    if seen & 0x3_fffe != 0x3_fffe {
        return Err(Refused("SGX TCB lacks a component or the PCE SVN"));
    }
    Ok(out)
}
