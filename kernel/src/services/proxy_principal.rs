//! The inference proxy as a principal of the monitor's evidence (issue 14). When the
//! bundle's policy declares models, the proxy session ([`InferenceService`]) is set up
//! *before* the evidence is issued, so each model whose pin the session proved gets a
//! `model:<name>` claim (`omega_kernel::attest::model_facts`): a leaf of the same tree, under
//! the same report, as every other principal's. The claim names the identity the session
//! proved (never the pin itself), the model file digest of the proxy's evidence and, when the
//! policy required GPU evidence and it verified, its SHA-256.
//!
//! Bounded and never blocking the evidence: the wait ends when the session is up, refused
//! or failed, or after [`inference::FIRST_SESSION_MS`] (what the agents waited before the
//! evidence moved here, so a boot takes no longer). A policy without models starts no
//! session and waits for nothing; a launcher without a proxy answers the evidence request
//! with an error at once. Without a session the evidence goes out without `model:` claims,
//! and after it one `MODEL_CLAIM` entry per model says whether it is claimed, and if not,
//! why. The session (and so the agents' inference) goes on as before: a session that comes
//! up after the evidence serves agents but is in the log only (`PROXY_SESSION`).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use omega_arch::exit::ExitCode;
use omega_arch::serial_println;
use omega_kernel::attest::{ModelFacts, ProvenProxy, Unclaimed, model_facts};
use omega_kernel::channel::HostText;
use omega_provenance::Decision;
use omega_provenance::entry::lifecycle;
use omega_wire::Stream;

use super::inference::{self, InferenceService};
use super::log::LogService;
use super::{HostChannel, LoopState, Step};
use crate::monitor::{DigestPrefix, Monitor};

/// The proxy session set up before the evidence, and what the evidence may claim of it.
pub struct Early {
    /// The session the agents use (off when the policy names no model).
    pub inference: InferenceService,
    /// The `model:<name>` claims for the evidence.
    pub models: Vec<ModelFacts>,
    /// The policy's models left unclaimed, and why (for the log).
    left: Vec<(String, String)>,
}

impl Early {
    fn none() -> Self {
        Early {
            inference: InferenceService::off(),
            models: Vec::new(),
            left: Vec::new(),
        }
    }

    /// After the evidence: one `MODEL_CLAIM` entry per policy model (claimed: allow with
    /// the proved identity; left out: error with why). Nothing when no evidence was issued
    /// (its `EVIDENCE` error entry says so for every principal).
    pub fn log(&self, ch: &mut HostChannel, log: &mut LogService<'_>, issued: bool) {
        if !issued {
            return;
        }
        for m in &self.models {
            serial_println!(
                "omega: evidence: model:{} claimed (proxy identity {}, model {}{})",
                HostText(&m.name),
                DigestPrefix(&m.proxy_identity),
                DigestPrefix(&m.model_digest),
                if m.gpu_evidence_digest.is_some() {
                    ", GPU evidence"
                } else {
                    ""
                }
            );
            log.lifecycle(
                ch,
                lifecycle::MODEL_CLAIM,
                0,
                Decision::Allow,
                Some(m.proxy_identity),
                Some(cut(&m.name).as_bytes()),
            );
        }
        for (name, why) in &self.left {
            let line = format!("{name}: {why}");
            serial_println!("omega: evidence: no claim for model:{}", HostText(&line));
            log.lifecycle(
                ch,
                lifecycle::MODEL_CLAIM,
                0,
                Decision::Error,
                None,
                Some(cut(&line).as_bytes()),
            );
        }
    }
}

/// `s` cut to a log entry's name (`omega_provenance::entry::MAX_NAME` bytes).
fn cut(s: &str) -> &str {
    let mut end = s.len().min(omega_provenance::entry::MAX_NAME);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Once the bundle is in, before the evidence: when its policy declares models, starts the
/// proxy session and waits (bounded) for it to be up or down; returns the session and the
/// claims it earned. `Err` to stop (the host asked to shut down meanwhile).
pub fn connect(
    m: &Monitor,
    ch: &mut HostChannel,
    log: &mut LogService<'_>,
    state: &mut LoopState,
) -> Result<Early, ExitCode> {
    // The policy the agents will run under (`agents::take_bundle` decodes the same file); one
    // that does not decode runs no agent, and so needs no proxy.
    let Some((_, files)) = state.bundle.contents() else {
        return Ok(Early::none());
    };
    let Some(Ok(policy)) = files.get(1).map(|f| omega_policy::decode(&f.bytes)) else {
        return Ok(Early::none());
    };
    if policy.models.is_empty() {
        return Ok(Early::none());
    }
    let models: Vec<(String, [u8; 32])> = policy
        .models
        .iter()
        .map(|t| (String::from(t.name), t.hash))
        .collect();
    let t0 = log.now_ms();
    let mut session = InferenceService::start(&policy, ch, log);
    drop(policy);
    let deadline = t0.saturating_add(inference::FIRST_SESSION_MS);
    let mut timed_out = false;
    while session.connecting() {
        if log.now_ms() >= deadline {
            serial_println!(
                "omega: inference: no proxy session within {} ms; the evidence goes out without model claims and the agents start without a session",
                inference::FIRST_SESSION_MS
            );
            timed_out = true;
            break;
        }
        match super::step(ch, log, state) {
            Step::Idle => crate::hw::idle::wait(m),
            Step::Exit(code) => return Err(code),
            // No agent has run: nothing waits for an answer but the session.
            Step::Reply(Stream::Inference, reply) => drop(session.on_host(ch, log, reply)),
            // The host reconnected: the session's bytes in flight are lost.
            Step::Reply(Stream::Control, Err(e)) if e.1 == super::HOST_RECONNECTED => {
                drop(session.on_host(ch, log, Err(e)))
            }
            Step::Reply(..) | Step::Busy | Step::Acked => {}
        }
    }
    serial_println!(
        "omega: evidence: waited {} ms for the proxy session ({})",
        log.now_ms().saturating_sub(t0),
        if session.verified().is_some() {
            "up"
        } else {
            "not up"
        }
    );
    let proven = session.verified().map(|p| ProvenProxy {
        identity: p.identity,
        model_digest: p.evidence.model_sha256,
        gpu_evidence_digest: p.gpu_evidence_sha256,
    });
    let no_session = if timed_out {
        format!("no proxy session within {} ms", inference::FIRST_SESSION_MS)
    } else {
        format!(
            "no proxy session ({})",
            session.down_reason().unwrap_or("not up")
        )
    };
    // SECURITY: a model the session was refused for (its pin matches, its GPU requirement
    // does not) is not served by this proxy; claiming it would tell a verifier otherwise.
    let refused = session.refused_models();
    let (claimed, left) = model_facts(
        models
            .iter()
            .filter(|(n, _)| !refused.iter().any(|(r, _)| r == n))
            .map(|(n, pin)| (n.as_str(), pin)),
        proven.as_ref(),
    );
    let refused_left = refused
        .iter()
        .map(|(name, why)| (name.clone(), format!("refused for it: {why}")));
    let left = left
        .into_iter()
        .map(|(name, why)| {
            let why = match why {
                Unclaimed::NoSession => no_session.clone(),
                Unclaimed::OtherPin => "pinned to another proxy".into(),
                Unclaimed::BadName => "its name cannot be a claim".into(),
                Unclaimed::Duplicate => "a model of the same name is claimed".into(),
            };
            (name, why)
        })
        .chain(refused_left)
        .collect();
    Ok(Early {
        inference: session,
        models: claimed,
        left,
    })
}
