//! The SIGMA-I handshake: three messages, each side's identity encrypted and signed over the
//! transcript, the peer's credential judged by a [`PeerAuthority`].

use alloc::vec::Vec;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::message::{Kind, Message, encode_message};
use crate::record::Session;
use crate::schedule::{self, LABEL, Schedule, Transcript};
use crate::{MAX_CREDENTIAL, PeerAuthority, PeerError, PeerName, TAG_LEN, VERSION};

/// Smallest sealed identity: key, credential length, empty credential, signature, tag.
pub(crate) const IDENTITY_MIN: usize = 32 + 2 + 64 + TAG_LEN;

/// This monitor's side of a channel: its Ed25519 peer key (claimed in its evidence) and the
/// credential it presents (the coordinator's, or its name for a [`crate::PinnedAuthority`]).
pub struct Identity {
    kp: ed25519_compact::KeyPair,
    credential: Vec<u8>,
}

impl Identity {
    /// SECURITY: an all-zero seed means the entropy source failed; refused.
    pub fn from_seed(seed: [u8; 32], credential: Vec<u8>) -> Result<Self, PeerError> {
        if seed == [0; 32] {
            return Err(PeerError::BadLocalKey);
        }
        if credential.len() > MAX_CREDENTIAL {
            return Err(PeerError::TooLarge("credential"));
        }
        let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed));
        Ok(Identity { kp, credential })
    }

    /// The Ed25519 public key the peers check (the evidence's `PeerKey` claim).
    pub fn public(&self) -> [u8; 32] {
        *self.kp.pk
    }

    /// Replaces the credential (a fresh one from the coordinator).
    pub fn set_credential(&mut self, credential: Vec<u8>) -> Result<(), PeerError> {
        if credential.len() > MAX_CREDENTIAL {
            return Err(PeerError::TooLarge("credential"));
        }
        self.credential = credential;
        Ok(())
    }

    /// `pk ‖ len ‖ credential ‖ Sig(LABEL ‖ " " ‖ role ‖ th ‖ pk ‖ len ‖ credential)`.
    fn signed_block(&self, role: &[u8], th: &[u8; 32]) -> Zeroizing<Vec<u8>> {
        let mut block = Zeroizing::new(Vec::with_capacity(IDENTITY_MIN + self.credential.len()));
        block.extend_from_slice(&*self.kp.pk);
        // Bounded by MAX_CREDENTIAL at construction.
        block.extend_from_slice(&(self.credential.len() as u16).to_be_bytes());
        block.extend_from_slice(&self.credential);
        let sig = self.kp.sk.sign(signed_input(role, th, &block), None);
        block.extend_from_slice(&*sig);
        block
    }
}

fn signed_input(role: &[u8], th: &[u8; 32], identity: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(LABEL.len() + 1 + role.len() + 32 + identity.len());
    m.extend_from_slice(LABEL);
    m.push(b' ');
    m.extend_from_slice(role);
    m.extend_from_slice(th);
    m.extend_from_slice(identity);
    m
}

const RESP_ROLE: &[u8] = b"responder signature";
const INIT_ROLE: &[u8] = b"initiator signature";

/// Checks an opened identity block: layout, signature under its key, not our own key, then
/// the authority. Returns the peer's name, key and credential.
fn check_block(
    block: &[u8],
    role: &[u8],
    th: &[u8; 32],
    own: &[u8; 32],
    authority: &dyn PeerAuthority,
    now_s: u64,
) -> Result<(PeerName, [u8; 32], Vec<u8>), PeerError> {
    let too_short = PeerError::Malformed("identity block");
    let key: [u8; 32] = block
        .get(..32)
        .ok_or(too_short.clone())?
        .try_into()
        .map_err(|_| too_short.clone())?;
    let len = block.get(32..34).ok_or(too_short.clone())?;
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    if len > MAX_CREDENTIAL {
        return Err(PeerError::TooLarge("credential"));
    }
    let signed_end = 34 + len;
    if block.len() != signed_end + 64 {
        return Err(PeerError::Malformed("identity block length"));
    }
    let sig: [u8; 64] = block[signed_end..].try_into().map_err(|_| too_short)?;
    // SECURITY: a peer with our own key is our own message reflected back (or our key
    // leaked): either way not a peer.
    if &key == own {
        return Err(PeerError::Reflection);
    }
    let pk = ed25519_compact::PublicKey::new(key);
    pk.verify(
        signed_input(role, th, &block[..signed_end]),
        &ed25519_compact::Signature::new(sig),
    )
    .map_err(|_| PeerError::BadSignature)?;
    // Only a key that proved possession reaches the authority.
    let name = authority.check(&block[34..signed_end], &key, now_s)?;
    Ok((name, key, block[34..signed_end].to_vec()))
}

/// X25519 with the peer's public key; SECURITY: a low-order key gives an all-zero or
/// otherwise non-contributory secret that the relay could predict: refused.
fn agree(secret: &StaticSecret, peer: [u8; 32]) -> Result<Schedule, PeerError> {
    let shared = Zeroizing::new(secret.diffie_hellman(&PublicKey::from(peer)));
    if !shared.was_contributory() {
        return Err(PeerError::WeakKey);
    }
    Ok(Schedule::new(shared.as_bytes()))
}

fn ephemeral(seed: [u8; 32]) -> Result<(StaticSecret, [u8; 32]), PeerError> {
    if seed == [0; 32] {
        return Err(PeerError::BadLocalKey);
    }
    let secret = StaticSecret::from(seed);
    let public = PublicKey::from(&secret).to_bytes();
    Ok((secret, public))
}

/// Who the peer is, once the handshake is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The name the authority vouched for.
    pub name: PeerName,
    /// The peer's Ed25519 peer key (as its evidence claims it).
    pub key: [u8; 32],
    /// Derived from the whole transcript: equal at both ends, logged by both.
    pub session_id: [u8; 16],
    /// The credential the peer presented (the authority accepted it for `key`): what a
    /// caller needs beyond the name, e.g. the fleet credential's role for route decisions.
    pub credential: Vec<u8>,
}

/// A finished handshake: who the peer is and the record layer.
pub struct Established {
    pub peer: PeerInfo,
    pub session: Session,
}

fn establish(
    schedule: &Schedule,
    transcript: &Transcript,
    initiator: bool,
    name: PeerName,
    key: [u8; 32],
    credential: Vec<u8>,
) -> Established {
    let th = transcript.hash();
    let i2r = schedule.key(b"app i2r", &th);
    let r2i = schedule.key(b"app r2i", &th);
    let id = schedule.key(b"session id", &th);
    let mut session_id = [0u8; 16];
    session_id.copy_from_slice(&id[..16]);
    let (send, recv) = if initiator { (i2r, r2i) } else { (r2i, i2r) };
    Established {
        peer: PeerInfo {
            name,
            key,
            session_id,
            credential,
        },
        session: Session::new(send, recv, session_id),
    }
}

/// The initiator after sending `Init`.
pub struct Initiator {
    secret: StaticSecret,
    transcript: Transcript,
    expected: Option<PeerName>,
}

impl Initiator {
    /// Starts a handshake with a fresh ephemeral secret (from the caller's entropy; never
    /// reuse one). `expected`: the node the caller means to reach; another admitted node
    /// answering is refused ([`PeerError::WrongPeer`]). Returns the `Init` message to send.
    pub fn start(
        ephemeral_seed: [u8; 32],
        expected: Option<PeerName>,
    ) -> Result<(Initiator, Vec<u8>), PeerError> {
        let (secret, public) = ephemeral(ephemeral_seed)?;
        let mut body = Vec::with_capacity(33);
        body.push(VERSION);
        body.extend_from_slice(&public);
        let init = encode_message(Kind::Init, &body);
        let mut transcript = Transcript::new();
        transcript.add(&init);
        Ok((
            Initiator {
                secret,
                transcript,
                expected,
            },
            init,
        ))
    }

    /// Takes the responder's `Resp`; returns the session and the `Finish` message to send.
    pub fn on_resp(
        mut self,
        identity: &Identity,
        resp: &Message,
        authority: &dyn PeerAuthority,
        now_s: u64,
    ) -> Result<(Established, Vec<u8>), PeerError> {
        if resp.kind != Kind::Resp {
            return Err(PeerError::Unexpected {
                got: resp.kind,
                state: "initiator awaiting Resp",
            });
        }
        let (e_r, sealed) = resp
            .body
            .split_at_checked(32)
            .ok_or(PeerError::Malformed("Resp"))?;
        let e_r: [u8; 32] = e_r.try_into().map_err(|_| PeerError::Malformed("Resp"))?;
        let schedule = agree(&self.secret, e_r)?;
        self.transcript.add(&e_r);
        let th1 = self.transcript.hash();
        let hs_r = schedule.key(b"hs resp", &th1);
        let block = Zeroizing::new(
            schedule::open(&hs_r, 0, &th1, sealed).ok_or(PeerError::HandshakeDecrypt)?,
        );
        let (name, key, credential) = check_block(
            &block,
            RESP_ROLE,
            &th1,
            &identity.public(),
            authority,
            now_s,
        )?;
        if let Some(expected) = self.expected.take()
            && expected != name
        {
            return Err(PeerError::WrongPeer {
                expected,
                got: name,
            });
        }
        // th2 = H(LABEL ‖ Init ‖ e_R ‖ Resp): the transcript continues over the whole Resp
        // as it travelled (e_R is hashed twice, which keeps one running hash).
        let mut transcript = self.transcript;
        transcript.add(&resp.encode());
        let th2 = transcript.hash();
        let hs_i = schedule.key(b"hs init", &th2);
        let mine = identity.signed_block(INIT_ROLE, &th2);
        let finish = encode_message(Kind::Finish, &schedule::seal(&hs_i, 0, &th2, &mine));
        transcript.add(&finish);
        Ok((
            establish(&schedule, &transcript, true, name, key, credential),
            finish,
        ))
    }
}

/// The responder's entry point.
pub struct Responder;

impl Responder {
    /// Takes an `Init`; returns the waiting state and the `Resp` message to send. A fresh
    /// ephemeral secret per `Init`: a replayed `Init` gets a different `Resp`, and the old
    /// session's `Finish` does not decrypt under it.
    pub fn on_init(
        identity: &Identity,
        ephemeral_seed: [u8; 32],
        init: &Message,
    ) -> Result<(ResponderWaiting, Vec<u8>), PeerError> {
        if init.kind != Kind::Init {
            return Err(PeerError::Unexpected {
                got: init.kind,
                state: "responder awaiting Init",
            });
        }
        let (&version, e_i) = init
            .body
            .split_first()
            .ok_or(PeerError::Malformed("Init"))?;
        if version != VERSION {
            return Err(PeerError::Version(version));
        }
        let e_i: [u8; 32] = e_i.try_into().map_err(|_| PeerError::Malformed("Init"))?;
        let (secret, e_r) = ephemeral(ephemeral_seed)?;
        let schedule = agree(&secret, e_i)?;
        let mut transcript = Transcript::new();
        transcript.add(&init.encode());
        transcript.add(&e_r);
        let th1 = transcript.hash();
        let hs_r = schedule.key(b"hs resp", &th1);
        let mine = identity.signed_block(RESP_ROLE, &th1);
        let mut body = Vec::with_capacity(32 + mine.len() + TAG_LEN);
        body.extend_from_slice(&e_r);
        body.extend_from_slice(&schedule::seal(&hs_r, 0, &th1, &mine));
        let resp = encode_message(Kind::Resp, &body);
        transcript.add(&resp);
        Ok((
            ResponderWaiting {
                schedule,
                transcript,
                own: identity.public(),
            },
            resp,
        ))
    }
}

/// The responder after sending `Resp`.
pub struct ResponderWaiting {
    schedule: Schedule,
    transcript: Transcript,
    own: [u8; 32],
}

impl ResponderWaiting {
    /// Takes the initiator's `Finish`.
    pub fn on_finish(
        mut self,
        finish: &Message,
        authority: &dyn PeerAuthority,
        now_s: u64,
    ) -> Result<Established, PeerError> {
        if finish.kind != Kind::Finish {
            return Err(PeerError::Unexpected {
                got: finish.kind,
                state: "responder awaiting Finish",
            });
        }
        let th2 = self.transcript.hash();
        let hs_i = self.schedule.key(b"hs init", &th2);
        let block = Zeroizing::new(
            schedule::open(&hs_i, 0, &th2, &finish.body).ok_or(PeerError::HandshakeDecrypt)?,
        );
        let (name, key, credential) =
            check_block(&block, INIT_ROLE, &th2, &self.own, authority, now_s)?;
        self.transcript.add(&finish.encode());
        Ok(establish(
            &self.schedule,
            &self.transcript,
            false,
            name,
            key,
            credential,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PinnedAuthority;

    /// The full SIGMA man in the middle: Mallory runs a handshake with each side on her own
    /// ephemeral keys, decrypts beta's signed identity with her keys and re-seals it for
    /// alpha. She has every key of both handshakes and still fails: beta's signature covers
    /// the ephemeral keys of beta's handshake, not alpha's.
    #[test]
    fn mitm_re_sealing_the_peers_identity_fails_on_the_signature() {
        let alpha = Identity::from_seed([11; 32], b"alpha".to_vec()).unwrap();
        let beta = Identity::from_seed([12; 32], b"beta".to_vec()).unwrap();
        let mut pins = PinnedAuthority::new();
        pins.pin(PeerName::new("alpha").unwrap(), alpha.public());
        pins.pin(PeerName::new("beta").unwrap(), beta.public());

        let (alpha_hs, alpha_init) = Initiator::start([1; 32], None).unwrap();
        let alpha_init = Message::decode(&alpha_init).unwrap();
        // Mallory → beta with her own Init.
        let (m_secret, m_pub) = ephemeral([66; 32]).unwrap();
        let mut m_init = Vec::from([VERSION]);
        m_init.extend_from_slice(&m_pub);
        let m_init = Message {
            kind: Kind::Init,
            body: m_init,
        };
        let (_, beta_resp) = Responder::on_init(&beta, [2; 32], &m_init).unwrap();
        let beta_resp = Message::decode(&beta_resp).unwrap();
        let e_r: [u8; 32] = beta_resp.body[..32].try_into().unwrap();
        let to_beta = agree(&m_secret, e_r).unwrap();
        let mut t = Transcript::new();
        t.add(&m_init.encode());
        t.add(&e_r);
        let th_beta = t.hash();
        let block = schedule::open(
            &to_beta.key(b"hs resp", &th_beta),
            0,
            &th_beta,
            &beta_resp.body[32..],
        )
        .expect("Mallory holds beta's handshake keys");
        // Mallory → alpha: beta's block re-sealed under the alpha–Mallory keys.
        let e_i: [u8; 32] = alpha_init.body[1..].try_into().unwrap();
        let (m2_secret, m2_pub) = ephemeral([67; 32]).unwrap();
        let to_alpha = agree(&m2_secret, e_i).unwrap();
        let mut t = Transcript::new();
        t.add(&alpha_init.encode());
        t.add(&m2_pub);
        let th_alpha = t.hash();
        let mut body = m2_pub.to_vec();
        body.extend_from_slice(&schedule::seal(
            &to_alpha.key(b"hs resp", &th_alpha),
            0,
            &th_alpha,
            &block,
        ));
        let forged = Message {
            kind: Kind::Resp,
            body,
        };
        assert_eq!(
            alpha_hs.on_resp(&alpha, &forged, &pins, 0).err(),
            Some(PeerError::BadSignature)
        );
    }
}
