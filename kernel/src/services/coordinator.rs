//! The Fleet stream: this image is its fleet's coordinator when its bundle's manifest says
//! so (`coordinator { owner, min_policy_version }`, in the attested `bundle` claim). The
//! coordinator's logic is `omega_fleet::service` (no_std, host-tested); this module wires
//! it to the channel, the monitor's clock, its entropy and the provenance log.
//!
//! The coordinator key is drawn at boot (`BootKeys::coordinator_key`) and never leaves the
//! monitor; the evidence claims its public half with the owner and the policy floor
//! (principal `coordinator`), which is what nodes' bundles and fleet clients check first.
//! The host relays requests (`omega-fleet coordinator --in-image`, through `omega run
//! --fleet-connect`) and is trusted with nothing: policies count only under the owner's
//! key and at or above the floor, placements are of bundle bytes the coordinator hashes
//! itself, admissions only of evidence that verifies under the coordinator's own roots
//! for a nonce it issued. Every request is logged (`FLEET_REQUEST`), granted or refused.
//!
//! Roots (the image's own copies): AMD's published ARK and ASK per generation
//! (`omega_snp_verify::amd`; the chip's VCEK comes with the request and is checked under
//! them), and the simulated PSP's lab chain (`omega_snp_verify::lab`; a report under it
//! stands for `simulated`, admitted only by a policy with `allow_simulated`).

use alloc::boxed::Box;

use omega_arch::serial_println;
use omega_fleet::service::{self, Deframer, Kind, Service, TrustedRoots};
use omega_fleet::signed::SigningKey;
use omega_kernel::attest::CoordinatorFacts as Identity;
use omega_kernel::channel::HostText;
use omega_provenance::Decision;
use omega_provenance::entry::lifecycle;
use omega_wire::Stream;

use super::log::LogService;
use super::{HostChannel, report_send_failure};

/// The roots this coordinator checks nodes' reports under (its own copies).
const ROOTS: TrustedRoots = TrustedRoots {
    lab: Some((
        omega_snp_verify::lab::ARK_PEM,
        omega_snp_verify::lab::ASK_PEM,
        omega_snp_verify::lab::VCEK_DER,
    )),
    amd: &omega_snp_verify::amd::FAMILIES,
    amd_arks: &omega_snp_verify::amd::ARKS,
};

/// Most relay bytes held before the bundle is in (the relay sends the owner's policy
/// first and waits for its answer; a placement before that is the relay's loss).
const MAX_EARLY: usize = 1 << 20;

pub struct CoordinatorService {
    seed: Option<[u8; 32]>,
    state: Option<Box<Running>>,
    /// The bundle is in: whether this image is a coordinator is decided.
    decided: bool,
    /// Relay bytes that came before the bundle (at most [`MAX_EARLY`]).
    early: alloc::vec::Vec<u8>,
    /// Fleet messages refused while not serving (the first 20 and every 1000th reported).
    refused: u64,
}

struct Running {
    service: Service,
    identity: Identity,
    deframer: Deframer,
}

impl CoordinatorService {
    /// `seed`: `BootKeys::coordinator_key` (none without entropy: no coordinator).
    pub fn new(seed: Option<&[u8; 32]>) -> Self {
        CoordinatorService {
            seed: seed.copied(),
            state: None,
            decided: false,
            early: alloc::vec::Vec::new(),
            refused: 0,
        }
    }

    /// The delivered bundle's `coordinator` entry (called once the bundle is in): with one,
    /// this monitor serves the Fleet stream until the host shuts it down.
    /// Relay bytes that came early are handled now (or refused). SECURITY: without a
    /// calibrated clock the coordinator's time would stand still and no challenge or
    /// credential window would ever close, so it does not serve.
    pub fn set_bundle(
        &mut self,
        ch: &mut HostChannel,
        log: &mut LogService<'_>,
        entry: Option<&omega_bundle::CoordinatorEntry>,
    ) {
        self.decided = true;
        self.start(entry, log.now_ns().is_some());
        let early = core::mem::take(&mut self.early);
        if !early.is_empty() {
            self.on_message(ch, log, &early);
        }
    }

    fn start(&mut self, entry: Option<&omega_bundle::CoordinatorEntry>, clock: bool) {
        let Some(entry) = entry else { return };
        if !clock {
            serial_println!("omega: coordinator: no calibrated clock; not serving");
            return;
        }
        let (Some(owner), Some(seed)) = (entry.owner_key(), self.seed) else {
            serial_println!("omega: coordinator: no key (no entropy at boot); not serving");
            return;
        };
        let Some(key) = SigningKey::from_seed(seed) else {
            serial_println!("omega: coordinator: key seed unusable; not serving");
            return;
        };
        let service = Service::new(key, owner, entry.min_policy_version, ROOTS);
        let identity = Identity {
            public: service.public(),
            owner,
            min_policy_version: entry.min_policy_version,
        };
        serial_println!(
            "omega: coordinator: serving the Fleet stream (policy floor v{})",
            entry.min_policy_version
        );
        self.state = Some(Box::new(Running {
            service,
            identity,
            deframer: Deframer::new(service::MAX_REQUEST),
        }));
    }

    /// The relay closed the Fleet stream: the coordinator stops (its challenges die with
    /// it; a new boot is a new coordinator, with a new key), and the monitor winds down as
    /// after its agents.
    pub fn on_closed(&mut self) {
        if self.state.take().is_some() {
            serial_println!("omega: coordinator: the relay closed the Fleet stream; stopping");
        }
    }

    /// Whether this monitor is a coordinator (it then runs until the relay closes the
    /// Fleet stream or the host shuts it down).
    pub fn serving(&self) -> bool {
        self.state.is_some()
    }

    pub fn identity(&self) -> Option<Identity> {
        self.state.as_ref().map(|s| s.identity)
    }

    /// Bytes from the relay on the Fleet stream: each whole request is handled, logged and
    /// answered in order.
    pub fn on_message(&mut self, ch: &mut HostChannel, log: &mut LogService<'_>, bytes: &[u8]) {
        if !self.decided {
            // SECURITY: bounded; past the bound the early bytes are dropped and refused.
            if self.early.len() + bytes.len() <= MAX_EARLY {
                self.early.extend_from_slice(bytes);
                return;
            }
            self.early = alloc::vec::Vec::new();
        }
        let Some(s) = self.state.as_mut() else {
            self.refused += 1;
            if super::worth_reporting(self.refused) {
                serial_println!(
                    "omega: coordinator: Fleet data refused ({} so far): this image is no coordinator",
                    self.refused
                );
            }
            super::refuse_stream(ch, Stream::Fleet);
            return;
        };
        s.deframer.push(bytes);
        let mut handled_any = false;
        while let Some(next) = s.deframer.next_message() {
            handled_any = true;
            let handled = match next {
                Ok(body) => {
                    let mut nonce = [0u8; 32];
                    let mut rng = crate::hw::entropy::CpuRng::detect();
                    match omega_kernel::entropy::fill(&mut rng, &mut nonce) {
                        Ok(()) => s.service.handle(&body, log.now_ms(), nonce),
                        Err(e) => service::refused(
                            Kind::Malformed,
                            0,
                            [0; 32],
                            "no-entropy",
                            alloc::format!("no entropy for a nonce: {e}"),
                        ),
                    }
                }
                Err(e) => {
                    serial_println!(
                        "omega: coordinator: the relay's stream is unusable ({e}); what it held is dropped"
                    );
                    service::refused(
                        Kind::Malformed,
                        0,
                        [0; 32],
                        "malformed",
                        alloc::format!("{e}"),
                    )
                }
            };
            let r = &handled.record;
            let target = match r.kind {
                Kind::Malformed => 0,
                Kind::Policy => 1,
                Kind::Place => 2,
                Kind::Admit => 3,
                Kind::Endorse => 4,
            };
            let decision = if r.granted {
                Decision::Allow
            } else {
                Decision::Deny
            };
            log.lifecycle(
                ch,
                lifecycle::FLEET_REQUEST,
                target,
                decision,
                Some(r.digest),
                Some(super::peer::entry_name(&r.name)),
            );
            serial_println!(
                "omega: coordinator: request {} ({:?}) {}: {}",
                handled.response.id(),
                r.kind,
                if r.granted { "granted" } else { "refused" },
                HostText(&r.name)
            );
            let out = service::frame(&service::encode(&handled.response));
            if let Err(e) = ch.send(Stream::Fleet, &out) {
                report_send_failure("a coordinator answer", &e);
            }
        }
        // A checkpoint covers every answered request at once: what the relay holds of the
        // coordinator's decisions is verifiable in its log without waiting for the next
        // periodic one (a coordinator runs until it is stopped).
        if handled_any {
            log.checkpoint(ch);
        }
    }
}
