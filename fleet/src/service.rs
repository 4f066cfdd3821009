//! The coordinator as a request/answer service: what an in-image coordinator serves on its
//! Fleet stream (docs/fleet.md, "The in-image coordinator") to an untrusted relay, and what
//! the host stand-in runs in-process. Defined once here, used by the monitor and the relay.
//!
//! The relay is trusted with nothing. It carries:
//! * owner-signed policy updates ([`Request::Policy`]), applied only under the owner key and
//!   at or above the version floor the coordinator was started with (its measured bundle);
//! * placements to sign ([`Request::Place`]) with the **whole bundle's bytes**: the
//!   coordinator hashes the manifest and each module itself and signs only a bundle whose
//!   every agent the policy pins;
//! * a node's evidence ([`Request::Admit`]), verified here ([`crate::attest`]) against the
//!   nonce of a challenge this coordinator issued.
//!
//! Time: the caller supplies only its monotonic clock (milliseconds since boot, which the
//! host cannot set back inside the guest). Unix time is anchored by the applied policy's
//! `issued_at` (signed by the owner, so no later than the true time when it was applied):
//! `now = anchor + time since the anchor`, a lower bound of the true time. Credentials and
//! challenges issued so expire early, never late; a host cannot stretch a window by
//! telling the coordinator a later time.
//!
//! Framing on the byte stream: each message is `length u32 (big-endian) ‖ postcard body`
//! ([`frame`], [`Deframer`]), so the relay may cut the bytes anywhere.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use omega_snp_verify::Roots;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::attest::SnpChain;
use crate::coordinator::Coordinator;
use crate::policy::AgentPin;
use crate::signed::SigningKey;
use crate::{Tee, Time};

/// Largest request body: a placement carries its bundle, as the wire carries one message
/// (`omega_wire::MAX_MESSAGE`) less room for the request's own fields.
pub const MAX_REQUEST: usize = (16 << 20) - 4096;
/// Largest answer body (a credential or a placement, or a refusal's reason).
pub const MAX_RESPONSE: usize = 16 * 1024;
/// Largest evidence bundle, VCEK or policy carried in a request.
pub const MAX_EVIDENCE: usize = 64 * 1024;
/// Longest refusal reason sent back (cut at a character boundary).
pub const MAX_REASON: usize = 1024;

/// A request from the relay. Each carries an id the answer repeats (the relay's to choose).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// An owner-signed policy update (`omega-fleet policy`).
    Policy { id: u64, signed: Vec<u8> },
    /// Sign a placement of the bundle `files` (in sending order: `manifest.json` first, as
    /// `omega_bundle::validate` checks) on `node` in `role`, with a fresh challenge nonce.
    Place {
        id: u64,
        workload: String,
        node: String,
        role: String,
        files: Vec<BundleFile>,
    },
    /// An Omega node's evidence (postcard `omega_evidence::Bundle`s: `platform`, `bundle`,
    /// and `peer`, which may be empty) answering the challenge `nonce`, its report checked
    /// under `chain`.
    Admit {
        id: u64,
        nonce: [u8; 32],
        chain: Chain,
        platform: Vec<u8>,
        bundle: Vec<u8>,
        peer: Vec<u8>,
    },
    /// An AWS Nitro Enclaves attestation document answering the challenge `nonce`, from a
    /// node claiming `node_key` (its `user_data` must be
    /// [`crate::admission::direct_binding`] of that key and the nonce), verified under the
    /// Nitro root of the fleet policy.
    AdmitNitro {
        id: u64,
        nonce: [u8; 32],
        document: Vec<u8>,
        node_key: [u8; 32],
    },
    /// The owner's endorsement of this coordinator's key (`crate::endorsement`): from then
    /// on every credential is answered as a `Presented` (the endorsement with it), which
    /// monitors whose bundles name the owner accept.
    Endorse { id: u64, signed: Vec<u8> },
    /// An Intel TDX guest: its DCAP quote binding `node_key` and the nonce (as `AdmitNitro`)
    /// with the PCS collateral the relay fetched, verified to Intel's root pinned in
    /// `omega_tee_verify::dcap` at the coordinator's time.
    AdmitTdx {
        id: u64,
        nonce: [u8; 32],
        quote: Vec<u8>,
        collateral: Vec<u8>,
        node_key: [u8; 32],
    },
}

impl Request {
    pub fn id(&self) -> u64 {
        match self {
            Request::Policy { id, .. }
            | Request::Place { id, .. }
            | Request::Admit { id, .. }
            | Request::AdmitNitro { id, .. }
            | Request::AdmitTdx { id, .. }
            | Request::Endorse { id, .. } => *id,
        }
    }
}

/// A bundle file, as the relay read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

impl omega_bundle::NamedFile for BundleFile {
    fn name(&self) -> &str {
        &self.name
    }
    fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Which roots a node's SNP report is checked under. The relay names them; it cannot
/// choose its way in: a report verified under the lab root stands for [`Tee::Simulated`],
/// which only a policy with `allow_simulated` admits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Chain {
    /// The simulated PSP's lab chain (its VCEK is the coordinator's own copy).
    Lab,
    /// AMD's roots of `family` (`milan`, `genoa`, `turin`: the coordinator's own copies)
    /// and the chip's VCEK (DER) from AMD's KDS, which the chain check verifies.
    Amd { family: String, vcek: Vec<u8> },
}

/// The coordinator's answer to the request with the same id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    PolicyApplied {
        id: u64,
        fleet: String,
        version: u64,
    },
    /// The owner's endorsement of this coordinator's key, accepted until `not_after`.
    Endorsed { id: u64, not_after: Time },
    /// The signed placement (`crate::Placement`), whose nonce is the node's challenge.
    Placed {
        id: u64,
        nonce: [u8; 32],
        placement: Vec<u8>,
    },
    /// The admitted node's signed credential (`crate::Credential`), the image rule that
    /// admitted it and the boot its `platform` evidence names.
    Admitted {
        id: u64,
        credential: Vec<u8>,
        image: String,
        boot_id: Option<[u8; 16]>,
    },
    /// Refused, naming the rule (`policy`, `placement`, `evidence`, `malformed`, or an
    /// admission rule: `measurement`, `nonce-replayed`, …) and why.
    Refused {
        id: u64,
        rule: String,
        reason: String,
    },
}

impl Response {
    pub fn id(&self) -> u64 {
        match self {
            Response::PolicyApplied { id, .. }
            | Response::Endorsed { id, .. }
            | Response::Placed { id, .. }
            | Response::Admitted { id, .. }
            | Response::Refused { id, .. } => *id,
        }
    }
}

/// Why a message could not be taken off the stream. The stream is unusable after it (the
/// framing is lost): the caller drops what it buffered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a message of {0} bytes is larger than the limit")]
    TooLarge(u64),
    #[error("a message does not decode")]
    Malformed,
}

/// `length u32 BE ‖ body`.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Takes framed messages out of a byte stream cut anywhere, each at most `max` bytes.
#[derive(Debug)]
pub struct Deframer {
    buf: Vec<u8>,
    max: usize,
}

impl Deframer {
    pub fn new(max: usize) -> Self {
        Deframer {
            buf: Vec::new(),
            max,
        }
    }

    /// Adds bytes from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held (a partial message).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole message, if one is in. SECURITY: a length over the limit is refused
    /// before anything is buffered for it, and everything held is dropped (the stream's
    /// framing is lost), so a hostile relay cannot make the coordinator hold more than
    /// `max` + one push.
    pub fn next_message(&mut self) -> Option<Result<Vec<u8>, FrameError>> {
        let head: [u8; 4] = self.buf.get(..4)?.try_into().ok()?;
        let len = u32::from_be_bytes(head) as usize;
        if len > self.max {
            self.buf = Vec::new();
            return Some(Err(FrameError::TooLarge(len as u64)));
        }
        let end = 4 + len;
        if self.buf.len() < end {
            return None;
        }
        let body = self.buf[4..end].to_vec();
        self.buf.drain(..end);
        Some(Ok(body))
    }
}

/// A request body decoded strictly (the whole body, nothing after it).
pub fn decode_request(body: &[u8]) -> Result<Request, FrameError> {
    if body.len() > MAX_REQUEST {
        return Err(FrameError::TooLarge(body.len() as u64));
    }
    let (r, rest) = postcard::take_from_bytes(body).map_err(|_| FrameError::Malformed)?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed);
    }
    Ok(r)
}

/// An answer body decoded strictly.
pub fn decode_response(body: &[u8]) -> Result<Response, FrameError> {
    if body.len() > MAX_RESPONSE {
        return Err(FrameError::TooLarge(body.len() as u64));
    }
    let (r, rest) = postcard::take_from_bytes(body).map_err(|_| FrameError::Malformed)?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed);
    }
    Ok(r)
}

/// Encodes a request or answer body (framed by [`frame`]).
pub fn encode<T: Serialize>(m: &T) -> Vec<u8> {
    postcard::to_allocvec(m).unwrap_or_default()
}

/// The roots a coordinator checks nodes' reports under: its own copies, never the relay's.
#[derive(Debug, Clone, Copy)]
pub struct TrustedRoots {
    /// The simulated PSP's lab ARK and ASK (PEM) and VCEK (DER), when this coordinator may
    /// verify lab evidence at all (still admitted only under `allow_simulated`).
    pub lab: Option<(&'static [u8], &'static [u8], &'static [u8])>,
    /// AMD's roots per family: (name, ARK PEM, ASK PEM).
    pub amd: &'static [(&'static str, &'static [u8], &'static [u8])],
    /// AMD's ARKs by family (what `ark.amd_root` accepts).
    pub amd_arks: &'static [(&'static str, &'static [u8])],
}

/// What the caller's log records for one request: its kind, whether it was granted, the
/// SHA-256 of what was signed (or of the request, when refused) and a name (the node, or
/// the rule that refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: Kind,
    pub granted: bool,
    pub digest: [u8; 32],
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Policy,
    Place,
    Admit,
    Endorse,
    /// A message that did not decode.
    Malformed,
}

/// The coordinator's state behind the Fleet stream.
pub struct Service {
    core: Coordinator,
    roots: TrustedRoots,
    /// (Unix seconds, caller's milliseconds) when the time anchor was last set.
    anchor: Option<(Time, u64)>,
    /// The owner's endorsement of this key (signed bytes), presented with each credential.
    endorsement: Option<Vec<u8>>,
}

/// One request's outcome: the answer for the relay and the record for the log.
pub struct Handled {
    pub response: Response,
    pub record: Record,
}

fn cut(mut s: String) -> String {
    if s.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

impl Service {
    /// A coordinator signing with `key`, obeying `owner`, applying no policy below
    /// `min_policy_version`.
    pub fn new(
        key: SigningKey,
        owner: [u8; 32],
        min_policy_version: u64,
        roots: TrustedRoots,
    ) -> Self {
        Service {
            core: Coordinator::new(key, owner, min_policy_version.saturating_sub(1)),
            roots,
            anchor: None,
            endorsement: None,
        }
    }

    pub fn public(&self) -> [u8; 32] {
        self.core.public()
    }

    /// The coordinator's Unix time at `uptime_ms` (see the module docs); `None` before a
    /// policy anchored it.
    pub fn now(&self, uptime_ms: u64) -> Option<Time> {
        let (unix, at) = self.anchor?;
        Some(unix.saturating_add(uptime_ms.saturating_sub(at) / 1000))
    }

    /// The state's core (the host stand-in admits TDX and Nitro guests through it, with the
    /// std verifiers; an in-image coordinator has none).
    pub fn core_mut(&mut self) -> &mut Coordinator {
        &mut self.core
    }

    /// Handles one request body: decoded strictly, then applied. `uptime_ms`: the
    /// caller's monotonic clock; `nonce`: 32 fresh random bytes (used by a placement).
    pub fn handle(&mut self, body: &[u8], uptime_ms: u64, nonce: [u8; 32]) -> Handled {
        let digest: [u8; 32] = Sha256::digest(body).into();
        match decode_request(body) {
            Ok(r) => self.handle_request(r, digest, uptime_ms, nonce),
            Err(e) => refused(Kind::Malformed, 0, digest, "malformed", e.to_string()),
        }
    }

    fn handle_request(
        &mut self,
        r: Request,
        digest: [u8; 32],
        uptime_ms: u64,
        nonce: [u8; 32],
    ) -> Handled {
        match r {
            Request::Policy { id, signed } => self.policy(id, &signed, digest, uptime_ms),
            Request::Place {
                id,
                workload,
                node,
                role,
                files,
            } => self.place(
                id, &workload, &node, &role, &files, digest, uptime_ms, nonce,
            ),
            Request::Admit {
                id,
                nonce: challenge,
                chain,
                platform,
                bundle,
                peer,
            } => self.admit(
                id, &challenge, &chain, &platform, &bundle, &peer, digest, uptime_ms,
            ),
            Request::AdmitNitro {
                id,
                nonce: challenge,
                document,
                node_key,
            } => self.admit_nitro(id, &challenge, &document, node_key, digest, uptime_ms),
            Request::Endorse { id, signed } => self.endorse(id, &signed, digest, uptime_ms),
            Request::AdmitTdx {
                id,
                nonce: challenge,
                quote,
                collateral,
                node_key,
            } => self.admit_tdx(
                id,
                &challenge,
                &quote,
                &collateral,
                node_key,
                digest,
                uptime_ms,
            ),
        }
    }

    fn endorse(&mut self, id: u64, signed: &[u8], digest: [u8; 32], uptime_ms: u64) -> Handled {
        let refuse = |why: String| refused(Kind::Endorse, id, digest, "endorsement", why);
        let (Some(now), Some(p)) = (self.now(uptime_ms), self.core.policy()) else {
            return no_policy(Kind::Endorse, id, digest, "endorsement");
        };
        let e = match crate::endorsement::Endorsement::decode(signed, &self.core.owner()) {
            Ok(e) => e,
            Err(e) => return refuse(alloc::format!("{e}")),
        };
        // SECURITY: only an endorsement of this very key, for this fleet, now valid: one
        // made for another coordinator (or boot) cannot be attached to this one's
        // credentials.
        if e.coordinator != self.public() {
            return refuse("it endorses another coordinator key".into());
        }
        if e.fleet_id != p.fleet_id {
            return refuse(alloc::format!("it is for fleet {:?}", e.fleet_id));
        }
        // The coordinator's time is a lower bound of the true time: an endorsement whose
        // window ends by then has surely expired; one that starts after it may be valid
        // already (signed a moment after the policy). Monitors check the whole window at
        // their upper bound.
        if e.not_after <= now {
            return refuse(alloc::format!(
                "expired at {} (now at least {now})",
                e.not_after
            ));
        }
        self.endorsement = Some(signed.to_vec());
        Handled {
            record: Record {
                kind: Kind::Endorse,
                granted: true,
                digest: Sha256::digest(signed).into(),
                name: alloc::format!("until {}", e.not_after),
            },
            response: Response::Endorsed {
                id,
                not_after: e.not_after,
            },
        }
    }

    fn admit_nitro(
        &mut self,
        id: u64,
        nonce: &[u8; 32],
        document: &[u8],
        node_key: [u8; 32],
        digest: [u8; 32],
        uptime_ms: u64,
    ) -> Handled {
        let Some(now) = self.now(uptime_ms) else {
            return no_policy(Kind::Admit, id, digest, "no-policy");
        };
        // SECURITY: the root is the owner's (the signed policy), never the relay's; the
        // document's certificates are checked at the coordinator's time, a lower bound of
        // the true time, and its freshness rests on binding this coordinator's nonce.
        let root = self
            .core
            .policy()
            .map(|p| p.nitro_root.clone())
            .unwrap_or_default();
        let attested = if document.len() > MAX_EVIDENCE {
            Err(String::from("Nitro document larger than its limit"))
        } else {
            crate::attest::nitro_node(document, &root, now, node_key)
        };
        self.decide(id, nonce, attested, digest, now, None)
    }

    #[allow(clippy::too_many_arguments)]
    fn admit_tdx(
        &mut self,
        id: u64,
        nonce: &[u8; 32],
        quote: &[u8],
        collateral: &[u8],
        node_key: [u8; 32],
        digest: [u8; 32],
        uptime_ms: u64,
    ) -> Handled {
        let Some(now) = self.now(uptime_ms) else {
            return no_policy(Kind::Admit, id, digest, "no-policy");
        };
        // SECURITY: Intel's root is pinned in the verifier, never the relay's; the collateral
        // (TCB info, QE identity, CRLs) must be current at the coordinator's time, a lower
        // bound of the true time, so the owner's policy updates also bound how stale a CRL
        // the relay can replay; freshness rests on the quote binding this nonce.
        let attested = crate::attest::tdx_node(quote, collateral, now, node_key);
        self.decide(id, nonce, attested, digest, now, None)
    }

    fn policy(&mut self, id: u64, signed: &[u8], digest: [u8; 32], uptime_ms: u64) -> Handled {
        let now = self.now(uptime_ms);
        match self.core.update_policy(signed) {
            Ok(p) => {
                let (fleet, version, issued_at) = (p.fleet_id.clone(), p.version, p.issued_at);
                // The anchor only moves forward: a policy signed earlier than the time
                // already derived does not set the clock back.
                let unix = now.map_or(issued_at, |n| n.max(issued_at));
                self.anchor = Some((unix, uptime_ms));
                Handled {
                    record: Record {
                        kind: Kind::Policy,
                        granted: true,
                        digest: Sha256::digest(signed).into(),
                        name: alloc::format!("{fleet} v{version}"),
                    },
                    response: Response::PolicyApplied { id, fleet, version },
                }
            }
            Err(e) => refused(Kind::Policy, id, digest, "policy", e.to_string()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn place(
        &mut self,
        id: u64,
        workload: &str,
        node: &str,
        role: &str,
        files: &[BundleFile],
        digest: [u8; 32],
        uptime_ms: u64,
        nonce: [u8; 32],
    ) -> Handled {
        let Some(now) = self.now(uptime_ms) else {
            return no_policy(Kind::Place, id, digest, "placement");
        };
        // SECURITY: the coordinator reads the bundle itself (the one check the monitor
        // that will run it applies), so the digest it signs and the pins it checks are of
        // these bytes, not the relay's word.
        let manifest = match omega_bundle::validate(files) {
            Ok(m) => m,
            Err(e) => {
                return refused(
                    Kind::Place,
                    id,
                    digest,
                    "placement",
                    alloc::format!("bundle: {e}"),
                );
            }
        };
        let mut pins = Vec::with_capacity(manifest.agents.len());
        for a in &manifest.agents {
            let Some(module) = files.iter().find(|f| f.name == a.module) else {
                return refused(
                    Kind::Place,
                    id,
                    digest,
                    "placement",
                    alloc::format!("bundle: no module {}", a.module),
                );
            };
            pins.push(AgentPin {
                name: a.name.clone(),
                publisher: a.claimed_publisher().into(),
                module_hash: Sha256::digest(&module.bytes).into(),
            });
        }
        let manifest_digest: [u8; 32] = Sha256::digest(&files[0].bytes).into();
        match self
            .core
            .place(workload, node, role, manifest_digest, &pins, nonce, now)
        {
            Ok(placement) => Handled {
                record: Record {
                    kind: Kind::Place,
                    granted: true,
                    digest: Sha256::digest(&placement).into(),
                    name: alloc::format!("{workload} on {node}"),
                },
                response: Response::Placed {
                    id,
                    nonce,
                    placement,
                },
            },
            Err(e) => refused(Kind::Place, id, digest, "placement", e.to_string()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn admit(
        &mut self,
        id: u64,
        nonce: &[u8; 32],
        chain: &Chain,
        platform: &[u8],
        bundle: &[u8],
        peer: &[u8],
        digest: [u8; 32],
        uptime_ms: u64,
    ) -> Handled {
        let Some(now) = self.now(uptime_ms) else {
            return no_policy(Kind::Admit, id, digest, "no-policy");
        };
        let attested = self.chain(chain).and_then(|c| {
            let mut a = crate::attest::omega_node(platform, bundle, nonce, &c)?;
            if !peer.is_empty() {
                crate::attest::omega_peer(&mut a, peer, nonce)?;
            }
            Ok(a)
        });
        let boot_id = crate::attest::platform_boot_id(platform, nonce);
        self.decide(id, nonce, attested, digest, now, boot_id)
    }

    /// Admits (or refuses) on `attested`, spending the challenge `nonce` whatever the
    /// outcome.
    fn decide(
        &mut self,
        id: u64,
        nonce: &[u8; 32],
        attested: Result<crate::Attested, String>,
        digest: [u8; 32],
        now: Time,
        boot_id: Option<[u8; 16]>,
    ) -> Handled {
        let outcome = match attested {
            Ok(a) => self
                .core
                .admit(nonce, &a, now)
                .map_err(|r| (r.rule(), r.to_string())),
            Err(e) => Err(match self.core.spend(nonce, now) {
                Ok(()) => ("evidence", e),
                Err(r) => (r.rule(), alloc::format!("{r}; and {e}")),
            }),
        };
        match outcome {
            Ok(adm) => {
                let c = &adm.credential;
                let name = alloc::format!("{}/{} #{}", c.node_id, c.role, c.serial);
                Handled {
                    record: Record {
                        kind: Kind::Admit,
                        granted: true,
                        digest: Sha256::digest(&adm.signed).into(),
                        name,
                    },
                    response: Response::Admitted {
                        id,
                        // Under the owner's endorsement: what owner-rooted monitors accept.
                        credential: match &self.endorsement {
                            Some(e) => crate::endorsement::Presented {
                                endorsement: e.clone(),
                                credential: adm.signed,
                            }
                            .encode(),
                            None => adm.signed,
                        },
                        image: adm.image,
                        boot_id,
                    },
                }
            }
            Err((rule, reason)) => refused(Kind::Admit, id, digest, rule, reason),
        }
    }

    /// The chain a node's report is checked under: this coordinator's own roots.
    fn chain<'a>(&self, c: &'a Chain) -> Result<SnpChain<'a>, String> {
        match c {
            Chain::Lab => {
                let (ark, ask, vcek) = self
                    .roots
                    .lab
                    .ok_or_else(|| String::from("this coordinator has no lab root"))?;
                Ok(SnpChain {
                    roots: Roots {
                        ark,
                        ask,
                        amd_arks: self.roots.amd_arks,
                        lab: true,
                    },
                    vcek,
                    tee: Tee::Simulated,
                })
            }
            Chain::Amd { family, vcek } => {
                let (_, ark, ask) = self
                    .roots
                    .amd
                    .iter()
                    .find(|(name, ..)| name == family)
                    .ok_or_else(|| alloc::format!("no AMD roots for family {family:?}"))?;
                if vcek.len() > MAX_EVIDENCE {
                    return Err(String::from("VCEK larger than its limit"));
                }
                // The VCEK is the relay's; the chain check verifies it under the ASK.
                Ok(SnpChain {
                    roots: Roots {
                        ark,
                        ask,
                        amd_arks: self.roots.amd_arks,
                        lab: false,
                    },
                    vcek,
                    tee: Tee::SevSnp,
                })
            }
        }
    }
}

/// A request that needs a policy (and the clock it anchors) before one was applied.
fn no_policy(kind: Kind, id: u64, digest: [u8; 32], rule: &str) -> Handled {
    refused(kind, id, digest, rule, "no fleet policy is loaded".into())
}

/// A refusal of request `id` (of `digest`) by `rule`, as [`Service::handle`] answers one;
/// for callers that refuse before the service is reached (a stream whose framing broke).
pub fn refused(kind: Kind, id: u64, digest: [u8; 32], rule: &str, reason: String) -> Handled {
    let reason = cut(reason);
    Handled {
        record: Record {
            kind,
            granted: false,
            digest,
            name: String::from(rule),
        },
        response: Response::Refused {
            id,
            rule: rule.to_string(),
            reason,
        },
    }
}
