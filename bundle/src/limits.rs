//! The bundle limits: the launcher refuses up front, and the monitor refuses on arrival,
//! exactly what breaks one of these.
//!
//! # Heap arithmetic
//!
//! The monitor's heap is sized from the guest's memory map (`omega_kernel::heap_size`: the
//! largest free RAM range but 16 MiB): 110 MiB in the default 128 MiB guest, about 1 000 MiB
//! in a 1 GiB one; these limits are sized against the smallest usual guest, the default
//! (they were set when the heap was a fixed 64 MiB, and still fit in one). While a bundle
//! arrives the monitor holds at most:
//!
//! | what | bytes |
//! |---|---|
//! | the files so far and the one arriving, each reserved exactly at its `File` header | ≤ [`MAX_TOTAL_BYTES`] = 32 MiB |
//! | one content message in reassembly (≤ [`MAX_CHUNK`]; its buffer doubles from 512 KiB) | ≤ 1.5 MiB |
//! | names (≤ [`MAX_FILES`] × [`MAX_NAME`]) and the parsed manifest (≤ [`MAX_AGENTS`] entries; with every agent's card text and 16 skills at their limits, ≤ 1.3 MiB, and never more than the manifest file's own size allows) | < 1.5 MiB |
//! | the rest of the monitor (decoder, frame buffers, provenance log) | ~0.2 MiB |
//! | what the host can make the channel hold on the other five streams (a partial message or one queued message, plus one window each: `kernel/src/channel/mod.rs`) | ≤ 5 × (2 MiB + 64 KiB) |
//!
//! so under 35.5 MiB at the peak from the bundle itself, and under 46.5 MiB if the host also
//! fills every other stream to its bound, 17.5 MiB of margin in a 64 MiB heap. The
//! manifest's entries are bounded by [`MAX_AGENTS`]; the agents they run (with
//! `instances`) by [`MAX_INSTANCES`], which the monitor admits one by one against its heap
//! (`omega_kernel::admission`) after the bundle is in. Measured (`qemu-tests/tests/bundle.rs`,
//! which requires 16 MiB left): with a 32 MiB bundle of 3 or of 130 files held, 31.9 MiB of
//! the heap is still free.
//!
//! Before this bound a file arrived as one message: the reassembly vector doubled past the
//! file's size (holding both copies while it grew), then the receiver copied it once more,
//! so a 17 MiB file needed over 64 MiB. The monitor's channel now refuses any message over
//! its reassembly limit (2 MiB, `Config::MONITOR` in `kernel/src/channel/mod.rs`, above
//! [`MAX_CHUNK`]), so a host that breaks this protocol cannot grow one either.

/// Most agents in one manifest: the policy format's limit (rule agent sets are bits of a
/// `u64`), so every manifest the launcher accepts can have a policy.
pub const MAX_AGENTS: usize = omega_policy::MAX_AGENTS;

/// Most agents running in one image: the manifest's entries with their `instances`
/// expanded. 1 GiB / 8 192 = 128 KiB per agent, and an idle agent with a one-page memory
/// holds about 75 KiB of the monitor's heap (`docs/agents.md`), so a 1 GiB guest holds this
/// many with room for the monitor; the monitor still admits each against the heap it has
/// (`kernel/src/services/admission.rs`). Every per-agent table in the monitor and the
/// launcher is bounded by it.
pub const MAX_INSTANCES: usize = 8192;

/// Most data files (`manifest.data`) in a bundle.
pub const MAX_DATA: usize = 64;

/// Most files in one bundle: the manifest, the policy, one module per agent and the data
/// files.
pub const MAX_FILES: u32 = MAX_AGENTS as u32 + 2 + MAX_DATA as u32;

/// Most bytes of all files together (one file may take all of it). See the heap arithmetic
/// above.
pub const MAX_TOTAL_BYTES: u64 = 32 << 20;

/// Longest file or agent name, in bytes.
pub const MAX_NAME: usize = 64;

/// Most bytes in one content message: a file's contents are sent as consecutive messages of
/// this size (the last one shorter), so the monitor never reassembles more than this at once.
pub const MAX_CHUNK: usize = 1 << 20;

/// Name of the manifest, always the first file.
pub const MANIFEST: &str = "manifest.json";

/// First bytes of every Wasm module.
pub const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// A file name: 1..=[`MAX_NAME`] bytes of `[A-Za-z0-9._-]`, not starting with `.`.
pub fn valid_file_name(name: &str) -> bool {
    // SECURITY: plain names only: no path separators, no `.`/`..`, no hidden files, so a
    // manifest cannot reach outside the bundle directory on the host.
    !name.starts_with('.') && valid_agent_name(name)
}

/// An agent name: 1..=[`MAX_NAME`] bytes of `[A-Za-z0-9._-]`.
pub fn valid_agent_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}
