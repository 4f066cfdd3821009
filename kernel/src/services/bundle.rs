//! The Bundle stream: the bundle (`omega-bundle`: `Begin`, per file `File` + contents,
//! `End`) is received, every file hashed on arrival and logged as a target before anything
//! else happens. A bundle the receiver refuses is answered with an `Error` on this stream.

use omega_arch::serial_println;
use omega_bundle::{BundleReceiver, Progress};
use omega_wire::{Stream, msg};

use super::log::LogService;
use super::{HostChannel, report_send_failure};
use crate::monitor::DigestPrefix;

// SECURITY: every name the receiver accepts fits a log entry; otherwise a bundle file
// with a long name would make the log append fail, and the host could stop the monitor.
const _: () = assert!(omega_bundle::MAX_NAME <= omega_provenance::entry::MAX_NAME);

#[derive(Default)]
pub struct BundleService {
    receiver: BundleReceiver,
    /// Set once the whole bundle is in and logged.
    delivered: bool,
}

impl BundleService {
    pub fn delivered(&self) -> bool {
        self.delivered
    }

    /// Handles one message from the host on the Bundle stream.
    pub fn on_message(&mut self, ch: &mut HostChannel, log: &mut LogService<'_>, body: &[u8]) {
        match self.receiver.on_message(body) {
            Ok(Progress::Started { files, total_bytes }) => {
                serial_println!("omega: bundle: receiving {files} files, {total_bytes} bytes")
            }
            Ok(Progress::Receiving) => {}
            Ok(Progress::File(i)) => {
                let f = &self.receiver.files[i];
                serial_println!(
                    "omega: bundle: {} ({} bytes) sha256 {}",
                    f.name,
                    f.bytes.len(),
                    DigestPrefix(&f.sha256)
                );
                log.define_target(ch, f.sha256, f.name.as_bytes());
            }
            Ok(Progress::Finished) => {
                // The heap left with the whole bundle held: the margin docs/host.md argues.
                serial_println!(
                    "omega: bundle: complete, {} files hashed and logged ({} KiB of heap free)",
                    self.receiver.files.len(),
                    crate::hw::heap::free() / 1024
                );
                log.checkpoint(ch);
                self.delivered = true;
            }
            Err(e) => {
                serial_println!("omega: bundle refused: {e}");
                if let Err(e) = ch.send_error(Stream::Bundle, msg::code::PROTOCOL, "bundle refused")
                {
                    report_send_failure("the bundle refusal", &e);
                }
            }
        }
    }
}
