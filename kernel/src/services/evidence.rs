//! The monitor attests itself: once the bundle is in and logged, and before any agent
//! starts, it builds its evidence (`omega_kernel::attest`: platform, log key, card key,
//! bundle, policy, each agent, tool servers, peer key, the coordinator's identity when the
//! bundle makes this image its fleet's coordinator, and each model the proxy session
//! proved: [`super::proxy_principal`]), binds the root to the host's challenge nonce and a report, sends
//! each principal its bundle (`ControlMsg::Evidence`) and logs the root (`EVIDENCE`).
//!
//! The report comes from the platform's PSP under SEV-SNP; in a test image on a plain VM,
//! when the host's challenge offered it, from the host's simulated PSP over the channel
//! (`ControlMsg::GuestRequest` / `GuestResponse`, lab VMPCK0; `tee: simulated`); otherwise
//! the evidence is explicitly unattested (`tee: none`).
//!
//! [`issue`] hands back the card key whose public half the evidence attests, so the agents
//! service can sign each started agent's A2A card (none without evidence: a card whose key
//! no evidence names is worth nothing to a verifier).
//!
//! SECURITY: evidence is never downgraded. If the report cannot be obtained (the host
//! answered badly, late, or not at all), no evidence is sent at all: the reason is printed
//! and logged (`EVIDENCE`, decision error), and a verifier has nothing to accept.

use alloc::string::{String, ToString};

use omega_arch::serial_println;
use omega_kernel::attest::cards::CardIssuer;
use omega_kernel::attest::{
    Challenges, CoordinatorFacts, Facts, ModelFacts, MonitorEvidence, PrincipalBundle, ReportSource,
};
use omega_provenance::Decision;
use omega_provenance::entry::lifecycle;
use omega_wire::msg::ControlMsg;
use sev_snp::report::REPORT_LEN;

use super::bundle::BundleService;
use super::log::LogService;
use super::{HostChannel, control};
use crate::monitor::{DigestPrefix, Monitor};

/// Builds, binds and sends the evidence (see the module docs). Closes the challenge: any
/// challenge after this is refused. Returns the card issuer whose key the evidence
/// attests, `None` when no evidence was issued.
pub fn issue(
    m: &Monitor,
    ch: &mut HostChannel,
    log: &mut LogService<'_>,
    challenges: &mut Challenges,
    bundle: &BundleService,
    models: &[ModelFacts],
    coordinator: Option<CoordinatorFacts>,
) -> Option<CardIssuer> {
    let challenge = challenges.close();
    let nonce = match challenge {
        Some(c) => c.nonce,
        None => {
            serial_println!(
                "omega: evidence: no challenge from the host; nonce all zero, freshness is NOT bound"
            );
            [0; 32]
        }
    };
    let (source, note) =
        ReportSource::choose(m.tee, challenge.as_ref(), cfg!(feature = "test-hooks"));
    if let Some(note) = note {
        serial_println!("omega: evidence: {note}");
    }
    let issued = match make(m, ch, log, bundle, source, nonce, models, coordinator) {
        Ok((bundles, root, cards)) => {
            for b in &bundles {
                control::send(
                    ch,
                    &ControlMsg::Evidence {
                        principal: &b.principal,
                        bundle: &b.bundle,
                    },
                );
            }
            serial_println!(
                "omega: evidence: {} principals sent, tee {}{}, root {}",
                bundles.len(),
                source.tee(),
                if source == ReportSource::Unattested {
                    " (UNATTESTED)"
                } else {
                    ""
                },
                DigestPrefix(&root)
            );
            log.lifecycle(
                ch,
                lifecycle::EVIDENCE,
                0,
                Decision::Allow,
                Some(root),
                Some(b"evidence"),
            );
            Some(cards)
        }
        Err(reason) => {
            serial_println!("omega: evidence: NOT issued: {reason}");
            log.lifecycle(
                ch,
                lifecycle::EVIDENCE,
                0,
                Decision::Error,
                None,
                Some(log_reason(&reason)),
            );
            None
        }
    };
    log.checkpoint(ch);
    issued
}

/// A log entry's name is at most `omega_provenance::entry::MAX_NAME` bytes.
fn log_reason(reason: &str) -> &[u8] {
    let max = omega_provenance::entry::MAX_NAME;
    let mut end = reason.len().min(max);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    if end == 0 {
        b"no evidence"
    } else {
        &reason.as_bytes()[..end]
    }
}

#[allow(clippy::too_many_arguments)]
fn make(
    m: &Monitor,
    ch: &mut HostChannel,
    log: &LogService<'_>,
    bundle: &BundleService,
    source: ReportSource,
    nonce: [u8; 32],
    models: &[ModelFacts],
    coordinator: Option<CoordinatorFacts>,
) -> Result<(alloc::vec::Vec<PrincipalBundle>, [u8; 32], CardIssuer), String> {
    let keys = m.keys.as_ref().ok_or("no entropy for the evidence key")?;
    let (manifest, files) = bundle.contents().ok_or("no bundle delivered")?;
    let cards = CardIssuer::new(*keys.card_key, keys.boot_id)
        .map_err(|e| alloc::format!("card key: {e}"))?;
    let facts = Facts::of_bundle(
        source.tee(),
        keys.boot_id,
        log.public_key(),
        cards.public(),
        manifest,
        files,
    )
    .map_err(|e| e.to_string())?;
    let peer_public =
        omega_kernel::attest::peer_public(*keys.peer_key).ok_or("peer key: zero seed")?;
    let facts = facts
        .with_peer_key(peer_public)
        .with_coordinator(coordinator)
        .with_models(models.to_vec());
    let mut rng = crate::hw::entropy::CpuRng::detect();
    let mut evidence =
        MonitorEvidence::new(*keys.evidence_key, &facts, &mut rng).map_err(|e| e.to_string())?;
    let report_data = evidence.attest(nonce).map_err(|e| e.to_string())?;
    let report: Option<[u8; REPORT_LEN]> = match source {
        ReportSource::Hardware => Some(
            m.platform
                .borrow_mut()
                .attestation_report(&report_data)
                .map_err(|e| alloc::format!("attestation report: {e}"))?,
        ),
        ReportSource::Simulated => Some(simulated::report(ch, report_data)?),
        ReportSource::Unattested => None,
    };
    // SECURITY: a report must carry the REPORT_DATA asked for. A response replayed from
    // another request (every simulated boot shares the lab VMPCK0 and starts at the same
    // sequence number) opens fine but attests another evidence root.
    if let Some(r) = &report
        && r[sev_snp::report::REPORT_DATA] != report_data[..]
    {
        return Err("the report carries another REPORT_DATA (a replayed response)".into());
    }
    let (bundles, root) = evidence
        .bundles(report.as_ref())
        .map_err(|e| e.to_string())?;
    Ok((bundles, root, cards))
}

/// The simulated PSP over the channel: test images only.
#[cfg(feature = "test-hooks")]
mod simulated {
    use alloc::string::{String, ToString};
    use alloc::vec::Vec;

    use omega_kernel::attest::{ChannelPsp, PspLink};
    use omega_kernel::channel::Transport;
    use omega_wire::Stream;
    use omega_wire::msg::{self, ControlMsg};
    use sev_snp::report::REPORT_LEN;
    use sev_snp::{GuestMessenger, Vmpck};

    use super::super::{HostChannel, SendError, control, report_send_failure};

    /// The channel as the simulated PSP's link: requests go out as `GuestRequest`, the
    /// `GuestResponse` is taken out of the channel's (bounded) queue, everything else
    /// that arrives meanwhile stays queued for the service loop.
    struct HostLink<'c> {
        ch: &'c mut HostChannel,
    }

    fn is_response(m: &[u8]) -> bool {
        matches!(
            msg::decode_exact::<ControlMsg<'_>>(m),
            Ok(ControlMsg::GuestResponse { .. })
        )
    }

    impl HostLink<'_> {
        fn take_response(&mut self) -> Option<Vec<u8>> {
            let m = self.ch.take_message(Stream::Control, is_response)?;
            match msg::decode_exact::<ControlMsg<'_>>(&m) {
                Ok(ControlMsg::GuestResponse { message }) => Some(message.to_vec()),
                _ => None,
            }
        }
    }

    impl PspLink for HostLink<'_> {
        type Error = SendError;

        fn send_request(&mut self, message: &[u8]) -> Result<(), SendError> {
            control::try_send(self.ch, &ControlMsg::GuestRequest { message })
        }

        fn poll_response(&mut self) -> Option<Vec<u8>> {
            if let Some(r) = self.take_response() {
                return Some(r);
            }
            match self.ch.receive() {
                Ok(true) => {}
                Ok(false) => self.ch.idle(),
                Err(e) => report_send_failure("a credit grant or error report", &e),
            }
            self.take_response()
        }

        fn now_ns(&mut self) -> Option<u64> {
            self.ch.transport_mut().now_ns()
        }
    }

    /// A report from the host's simulated PSP, with the lab VMPCK0.
    pub fn report(ch: &mut HostChannel, report_data: [u8; 64]) -> Result<[u8; REPORT_LEN], String> {
        // SECURITY: the lab key is public; what it protects says `tee: simulated`, which
        // verifiers accept only with an explicit lab-root flag.
        let key = Vmpck::new(sev_snp::lab::VMPCK0, 0).map_err(|e| e.to_string())?;
        let mut messenger = GuestMessenger::new(key);
        let mut psp = ChannelPsp::new(HostLink { ch });
        messenger
            .attestation_report(&mut psp, report_data)
            .map_err(|e| match psp.failure() {
                Some(f) => alloc::format!("simulated PSP: {f}"),
                None => alloc::format!("simulated PSP: {e}"),
            })
    }
}

/// A production image has no simulated PSP (`ReportSource::choose` never picks it there).
#[cfg(not(feature = "test-hooks"))]
mod simulated {
    use alloc::string::String;

    use sev_snp::report::REPORT_LEN;

    use super::super::HostChannel;

    pub fn report(_: &mut HostChannel, _: [u8; 64]) -> Result<[u8; REPORT_LEN], String> {
        Err("this production image has no simulated PSP".into())
    }
}
