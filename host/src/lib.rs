//! Host side of Omega: the QEMU launcher's building blocks and the channel session.
//!
//! * [`qemu`]: the QEMU command line and the meaning of QEMU's exit status.
//! * [`bundle`]: agent bundles read from a directory and checked with the contract the
//!   monitor applies (`omega-bundle`).
//! * [`shape`]: [`VmShape`], the SEV-SNP VM the launcher starts and whose launch digest it
//!   prints.
//! * [`files`]: files opened without following symlinks, private directories.
//! * [`session`]: [`ChannelSession`], the host end of the framed channel over any
//!   `Read + Write` pair, and [`echo_roundtrip`] for latency/throughput measurements.

pub mod bundle;
pub mod files;
pub mod qemu;
pub mod session;
pub mod shape;

pub use bundle::{Bundle, Manifest};
pub use qemu::{QemuConfig, QemuOutcome};
pub use session::{
    Challenge, ChannelSession, FileLogStore, LogStore, SessionConfig, SessionError, SessionEvent,
    TcpLink, echo_roundtrip,
};
pub use shape::VmShape;
