//! The message sequence on the Bundle stream (host -> guest), postcard-encoded with
//! `omega_wire::msg::{encode, decode_exact}`.
//!
//! `Begin`, then for each file a `File` header followed by its contents as consecutive
//! messages of [`MAX_CHUNK`] bytes (the last one shorter; none for an empty file), then
//! `End`, then Close.

use serde::{Deserialize, Serialize};

use crate::limits::MAX_CHUNK;

/// A header message on the Bundle stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BundleMsg<'a> {
    Begin { files: u32, total_bytes: u64 },
    File { name: &'a str, size: u64 },
    End,
}

/// Largest encoded [`BundleMsg`] (a `File` with a name of `MAX_NAME` bytes needs 77).
pub const MAX_HEADER_MESSAGE: usize = 128;

/// One message of the sequence, before encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    Header(BundleMsg<'a>),
    Content(&'a [u8]),
}

/// The whole sequence for `files` (name, contents) in sending order.
pub fn sequence<'a, N, B>(files: &'a [(N, B)]) -> impl Iterator<Item = Message<'a>> + 'a
where
    N: AsRef<str>,
    B: AsRef<[u8]>,
{
    let total_bytes = files.iter().map(|(_, b)| b.as_ref().len() as u64).sum();
    let begin = Message::Header(BundleMsg::Begin {
        files: files.len() as u32,
        total_bytes,
    });
    let body = files.iter().flat_map(|(name, bytes)| {
        let bytes = bytes.as_ref();
        let header = Message::Header(BundleMsg::File {
            name: name.as_ref(),
            size: bytes.len() as u64,
        });
        core::iter::once(header).chain(bytes.chunks(MAX_CHUNK).map(Message::Content))
    });
    core::iter::once(begin)
        .chain(body)
        .chain(core::iter::once(Message::Header(BundleMsg::End)))
}
