use alloc::vec::Vec;

use crate::{ENTRY_HEADER_LEN, FOOTER_GUID, Guid, SEV_METADATA_SIGNATURE, Section};

/// Builds a footer table; entries keep the order they were added in, the first added
/// sitting closest to the footer.
#[derive(Debug, Default, Clone)]
pub struct FooterBuilder {
    entries: Vec<(Guid, Vec<u8>)>,
}

impl FooterBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn entry(mut self, guid: Guid, data: &[u8]) -> Self {
        self.entries.push((guid, data.to_vec()));
        self
    }

    /// The table bytes; they end where the footer ends (`image size - 0x20`).
    /// Fails if the table would be longer than its u16 length field can say.
    pub fn build(&self) -> Result<Vec<u8>, usize> {
        let mut out = Vec::new();
        for (guid, data) in self.entries.iter().rev() {
            out.extend_from_slice(data);
            let len = data.len() + ENTRY_HEADER_LEN;
            out.extend_from_slice(&u16::try_from(len).map_err(|_| len)?.to_le_bytes());
            out.extend_from_slice(&guid.to_bytes_le());
        }
        let total = out.len() + ENTRY_HEADER_LEN;
        out.extend_from_slice(&u16::try_from(total).map_err(|_| total)?.to_le_bytes());
        out.extend_from_slice(&FOOTER_GUID.to_bytes_le());
        Ok(out)
    }
}

/// Encodes an "ASEV" version 1 metadata block.
pub fn encode_sev_metadata(sections: &[Section]) -> Vec<u8> {
    let len = crate::SEV_METADATA_HEADER_LEN + sections.len() * crate::SEV_METADATA_SECTION_LEN;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&SEV_METADATA_SIGNATURE);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    for s in sections {
        out.extend_from_slice(&s.gpa.to_le_bytes());
        out.extend_from_slice(&s.size.to_le_bytes());
        out.extend_from_slice(&(s.kind as u32).to_le_bytes());
    }
    out
}
