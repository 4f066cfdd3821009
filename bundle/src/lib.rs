//! The agent bundle contract between the launcher (`omega-host`) and the monitor: what a
//! bundle may contain ([`limits`], [`Manifest`]), the message sequence that carries it
//! ([`msg`]), the one check of a whole bundle ([`validate`]) and the monitor's streaming
//! [`BundleReceiver`]. Both sides use this crate, so the launcher refuses exactly what the
//! monitor would refuse, and the monitor can hold every bundle the launcher sends.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod error;
pub mod limits;
mod manifest;
pub mod msg;
mod receiver;
mod validate;

pub use error::{BundleError, ManifestError};
pub use limits::{
    MANIFEST, MAX_AGENTS, MAX_CHUNK, MAX_DATA, MAX_FILES, MAX_INSTANCES, MAX_NAME, MAX_TOTAL_BYTES,
    valid_agent_name, valid_file_name,
};
pub use manifest::{
    AgentEntry, CoordinatorEntry, DataEntry, FleetEntry, MANIFEST_VERSION, Manifest, NO_PUBLISHER,
    Restart, valid_data_path,
};
pub use msg::BundleMsg;
pub use receiver::{BundleFile, BundleReceiver, Progress};
pub use validate::{NamedFile, validate};
