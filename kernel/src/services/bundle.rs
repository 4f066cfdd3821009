//! The Bundle stream: the bundle (`omega-bundle`: `Begin`, per file `File` + contents,
//! `End`) is received, every file hashed on arrival and logged as a target before anything
//! else happens; once complete, a `BUNDLE_ACTIVE` entry names its manifest (by target and
//! digest) as the bundle in force. A bundle the receiver refuses is answered with an `Error`
//! on this stream. One bundle per boot: a second `Begin` after a completed bundle is
//! refused and logged (`BUNDLE_REFUSED`, decision deny).

use omega_arch::serial_println;
use omega_bundle::{BundleError, BundleReceiver, Progress};
use omega_provenance::Decision;
use omega_provenance::entry::lifecycle;
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
    /// Log target numbers of the files received so far, in order.
    targets: alloc::vec::Vec<u32>,
    /// Set once the whole bundle is in and logged.
    delivered: bool,
}

impl BundleService {
    pub fn delivered(&self) -> bool {
        self.delivered
    }

    /// The delivered bundle's manifest and files (in sending order); `None` before
    /// delivery or once taken.
    pub fn contents(&self) -> Option<(&omega_bundle::Manifest, &[omega_bundle::BundleFile])> {
        if !self.delivered {
            return None;
        }
        let manifest = self.receiver.manifest.as_ref()?;
        Some((manifest, &self.receiver.files))
    }

    /// The delivered bundle's manifest and files (in sending order), taken out for the
    /// agents; `None` before delivery or once taken. The receiver still refuses a second
    /// bundle.
    pub fn take(
        &mut self,
    ) -> Option<(
        omega_bundle::Manifest,
        alloc::vec::Vec<omega_bundle::BundleFile>,
    )> {
        if !self.delivered {
            return None;
        }
        let manifest = self.receiver.manifest.take()?;
        Some((manifest, core::mem::take(&mut self.receiver.files)))
    }

    /// Handles one message from the host on the Bundle stream.
    pub fn on_message(&mut self, ch: &mut HostChannel, log: &mut LogService<'_>, body: &[u8]) {
        match self.receiver.on_message(body) {
            Ok(Progress::Started { files, total_bytes }) => {
                self.targets.clear();
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
                let target = log.define_target(ch, f.sha256, f.name.as_bytes());
                self.targets.push(target);
            }
            Ok(Progress::Finished) => {
                // The heap left with the whole bundle held: the margin docs/host.md argues.
                serial_println!(
                    "omega: bundle: complete, {} files hashed and logged ({} KiB of heap free)",
                    self.receiver.files.len(),
                    crate::hw::heap::free() / 1024
                );
                // The manifest (always the first file) names the policy and each module: its
                // digest identifies the whole bundle for a verifier reading the log.
                let manifest = &self.receiver.files[0];
                serial_println!(
                    "omega: bundle: active, manifest sha256 {}",
                    DigestPrefix(&manifest.sha256)
                );
                log.lifecycle(
                    ch,
                    lifecycle::BUNDLE_ACTIVE,
                    self.targets[0],
                    Decision::Allow,
                    Some(manifest.sha256),
                    None,
                );
                // The checkpoint follows once the evidence is out (`services/evidence.rs`),
                // covering this entry and the evidence's.
                self.delivered = true;
            }
            Err(e @ BundleError::AlreadyDelivered) => {
                serial_println!("omega: bundle refused: {e}");
                log.lifecycle(
                    ch,
                    lifecycle::BUNDLE_REFUSED,
                    0,
                    Decision::Deny,
                    None,
                    Some(b"second bundle after a complete one"),
                );
                if let Err(e) = ch.send_error(
                    Stream::Bundle,
                    msg::code::PROTOCOL,
                    "a bundle was already delivered: one bundle per boot",
                ) {
                    report_send_failure("the bundle refusal", &e);
                }
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
