//! Many agents in one image: the manifest's entries expanded into their instances
//! (`instances = N` runs `NAME-0` .. `NAME-(N-1)`), each admitted against the heap
//! ([`omega_kernel::admission`]) and instantiated from its entry's checked module; the
//! heap they took is reported; each started agent's signed A2A card is logged
//! (`CARD_ISSUED`, the card's SHA-256) and sent to the host.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::convert::Infallible;

use omega_arch::serial_println;
use omega_bundle::{AgentEntry, BundleFile, Manifest};
use omega_kernel::admission::Admission;
use omega_kernel::attest::cards::CardIssuer;
use omega_kernel::channel::HostText;
use omega_provenance::entry::lifecycle;
use omega_runtime::{CheckedModule, Runtime};
use omega_wire::msg::ControlMsg;
use sha2::{Digest, Sha256};

use super::agents::{Host, refusal_code};
use super::control;
use crate::hw::heap;
use crate::monitor::DigestPrefix;

/// Refusals printed one by one before only their count is (the log has every one).
const REFUSALS_PRINTED: usize = 4;

/// Instantiates every running agent of the manifest (its entries' instances, in order),
/// `checked` holding one checked module per entry. Returns the started agents' names and
/// entries; an agent the heap cannot hold, or that fails to instantiate, is refused,
/// printed and logged, and the others start.
pub fn spawn_all<'a>(
    rt: &mut Runtime<'static, &mut Host<'_>>,
    checked: Vec<CheckedModule>,
    manifest: &'a Manifest,
    files: &[BundleFile],
) -> Vec<(String, &'a AgentEntry)> {
    let mut admission = Admission::new(heap::free() as u64);
    let mut started = Vec::new();
    let mut refused = 0usize;
    for (c, entry) in checked.iter().zip(&manifest.agents) {
        let module = files
            .iter()
            .find(|f| f.name == entry.module)
            .map(|f| &f.bytes[..]);
        for i in 0..entry.count() {
            let name = entry.instance_name(i);
            // SECURITY: admitted for its whole memory limit before it exists, so the
            // agents the host's manifest asks for cannot run the monitor out of heap by
            // growing (the count is bounded by the manifest, the size by the heap).
            let outcome = if admission.admit(entry.memory) {
                rt.spawn(c.instance(&name))
                    .map(|_| ())
                    .map_err(|e| (e.to_string(), refusal_code(&e)))
            } else {
                Err((
                    alloc::format!(
                        "agent `{name}`: the heap cannot hold its {} KiB memory limit beside the {} agents admitted (give the VM more memory or lower the limit)",
                        entry.memory >> 10,
                        started.len()
                    ),
                    "heap",
                ))
            };
            match outcome {
                Ok(()) => started.push((name, entry)),
                Err((why, code)) => {
                    refused += 1;
                    if refused <= REFUSALS_PRINTED {
                        serial_println!("omega: agents: refused: {}", HostText(&why));
                    }
                    rt.monitor_mut().log_refusal(&name, module, code);
                }
            }
        }
    }
    if refused > 0 {
        serial_println!("omega: agents: {refused} agents refused in all (each is in the log)");
    }
    started
}

/// Prints the heap the agents took: `used_before` = heap bytes in use before the first
/// was instantiated.
pub fn report_heap(agents: usize, used_before: usize) {
    let used = heap::used();
    let taken = used.saturating_sub(used_before);
    serial_println!(
        "omega: agents: heap {} KiB used by {agents} agents ({} bytes each), {} KiB in use, {} KiB free",
        taken >> 10,
        taken.checked_div(agents).unwrap_or(0),
        used >> 10,
        heap::free() >> 10
    );
}

/// Logs (`CARD_ISSUED`, content = the card's SHA-256) and sends each started agent's signed
/// A2A card to the host (`ControlMsg::AgentCard`); none when no evidence attests the card
/// key.
pub fn send_cards(
    h: &mut Host<'_>,
    cards: Option<&CardIssuer>,
    started: &[(String, &AgentEntry)],
    files: &[BundleFile],
) {
    let Some(cards) = cards else {
        serial_println!(
            "omega: agents: no evidence, so no agent cards (their key would be unattested)"
        );
        return;
    };
    let mut sent = 0;
    for (name, entry) in started {
        let Some(module) = files.iter().find(|f| f.name == entry.module) else {
            continue;
        };
        match cards.card_as(name, entry, module.sha256) {
            Ok(card) => {
                // SECURITY: the card is in the verified log before the host has it, so a
                // verifier holding a card can find it (by its hash) among what this
                // monitor issued.
                let Ok(id) = h.intern_agent(name, |log, ch, r| {
                    log.append(ch, r);
                    Ok::<(), Infallible>(())
                });
                let r = h.log.lifecycle_record(
                    id,
                    lifecycle::CARD_ISSUED,
                    0,
                    omega_provenance::Decision::Allow,
                    Some(Sha256::digest(card.as_bytes()).into()),
                    Some(b"card"),
                );
                h.log.append(&mut h.ch, &r);
                control::send(
                    &mut h.ch,
                    &ControlMsg::AgentCard {
                        agent: name,
                        card: &card,
                    },
                );
                sent += 1;
            }
            // The manifest was validated against the card contract: a monitor bug if hit.
            Err(e) => serial_println!(
                "omega: agents: no card for {}: {}",
                HostText(name),
                HostText(&e.to_string())
            ),
        }
    }
    serial_println!(
        "omega: agents: {sent} signed agent cards sent (card key {})",
        DigestPrefix(&cards.public())
    );
}

/// How often the heap in use is printed while agents run (the opt-in soak test reads it).
pub const HEAP_REPORT_MS: u64 = 30_000;

/// Prints `omega: agents: heap in use …` when `now_ms` has passed `*next` (then moves it
/// on by [`HEAP_REPORT_MS`]).
pub fn heap_tick(next: &mut u64, now_ms: u64, agents: usize) {
    if now_ms < *next {
        return;
    }
    *next = now_ms.saturating_add(HEAP_REPORT_MS);
    serial_println!(
        "omega: agents: heap in use {} KiB ({agents} agents, {} ms)",
        heap::used() >> 10,
        now_ms
    );
}
