//! Two production images linked by a peer channel (docs/fleet.md, "Channels between
//! images"): two `omega run` launchers, `--peer-listen` / `--peer-connect` on loopback with a
//! TCP proxy of this test between them (the untrusted relay, recording what it carries).
//! The channel's authority is the fleet coordinator: each bundle's manifest names the fleet
//! and the coordinator's key, and each launcher hands its monitor the node's credential
//! (`--peer-credential FILE`). This test stands in for the coordinator: once a node's
//! `peer` evidence verifies (`measurements verify-evidence --principal peer`), it signs the
//! node a credential binding the monitor key and peer key that evidence attests (admission
//! itself, against a fleet policy, is `fleet_admission.rs`'s).
//!
//! One test, six pairs of boots:
//! * clean: both monitors accept their credentials (`PEER_CREDENTIAL` allow), the session
//!   comes up (`PEER_SESSION` allow in both logs, naming the other node), is closed by
//!   both, both logs verify (`measurements verify-log`, as the launcher prints it), and no
//!   node name crosses the relay in the clear. Agents' messages cross it: A's `courier`
//!   (agents/) sends to three agents of B, in order: `node-b/vault`, which B's policy
//!   refuses (`no_vault`: `PEER_MESSAGE` deny in both logs, the courier gets `Denied {
//!   rule: "node-b:no_vault" }`); `node-b/archive`, which A's own policy refuses
//!   (`no_archive`: a deny decision in A's log, nothing crosses); `node-b/inbox`, delivered
//!   to B's `inbox` agent (`PEER_MESSAGE` allow in both logs, the same content digest at
//!   both ends), which prints it;
//! * tampered: the proxy flips one byte of the first record A sends (the courier's first
//!   message): B refuses it and logs the broken session (`PEER_SESSION` error, "does not
//!   decrypt"); A's courier is told the node is unreachable (`PEER_MESSAGE` error), never
//!   left waiting;
//! * replayed record: the proxy sends A's first record twice; B refuses the copy
//!   (`PEER_SESSION` error, "replayed") and nothing is delivered twice;
//! * another fleet: A runs a bundle of fleet `lab-2` (same coordinator key) with a
//!   credential of that fleet, which A accepts; B, of fleet `lab`, refuses A in the
//!   handshake ("node not admitted"), A sees it cut; both log `PEER_SESSION` deny;
//! * replayed credentials: each host hands its monitor a credential of an earlier boot
//!   (signed by the right coordinator, for the right node and fleet, binding other keys):
//!   A's monitor refuses it (`PEER_CREDENTIAL` deny, "credential binds another monitor
//!   key"), and so does B's unless A's monitor went away first (then B ends before its
//!   credential comes); no channel starts and nothing crosses the relay.
//! * owner-rooted: both bundles name the fleet's owner (`fleet.owner`), each credential
//!   comes with the owner's endorsement of the coordinator key (`omega_fleet::endorsement`):
//!   both monitors accept theirs and the session comes up.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use omega_fleet::credential::CREDENTIAL_FORMAT;
use omega_fleet::endorsement::{ENDORSEMENT_FORMAT, Endorsement, Presented};
use omega_fleet::signed::SigningKey;
use omega_fleet::{Credential, Tee};
use omega_provenance::entry::{EntryIter, lifecycle};
use omega_provenance::{Action, Decision};
use qemu_tests::{image, measurements, printed_verifier_commands, qemu_present, workspace_bin};

const WAIT: Duration = Duration::from_secs(240);

mod common;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What crossed the proxy, per direction (A→B, B→A).
#[derive(Default)]
struct Relayed {
    a_to_b: Vec<u8>,
    b_to_a: Vec<u8>,
}

/// What the relay does to the first record (kind 4) A sends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tamper {
    None,
    /// Flips its last byte.
    Flip,
    /// Sends it twice.
    Replay,
}

/// Copies `from` into `to` message by message (`kind u8 ‖ len u16 BE ‖ body`), recording
/// every byte, and does `tamper` to the first record.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    seen: Arc<Mutex<Relayed>>,
    a_to_b: bool,
    tamper: Tamper,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut tampered = tamper == Tamper::None;
    loop {
        let n = match from.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while buf.len() >= 3 {
            let len = 3 + u16::from_be_bytes([buf[1], buf[2]]) as usize;
            if buf.len() < len {
                break;
            }
            let mut m: Vec<u8> = buf.drain(..len).collect();
            if !tampered && m[0] == 4 {
                tampered = true;
                match tamper {
                    Tamper::Flip => *m.last_mut().unwrap() ^= 0x01,
                    Tamper::Replay => m.extend_from_slice(&m.clone()),
                    Tamper::None => {}
                }
            }
            {
                let mut s = seen.lock().unwrap();
                if a_to_b { &mut s.a_to_b } else { &mut s.b_to_a }.extend_from_slice(&m);
            }
            if to.write_all(&m).is_err() {
                return;
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// The relay between the launchers: accepts B's connection on `listen`, connects to A's
/// listener at `a_port`.
fn proxy(listen: TcpListener, a_port: u16, tamper: Tamper) -> Arc<Mutex<Relayed>> {
    let seen = Arc::new(Mutex::new(Relayed::default()));
    let s = Arc::clone(&seen);
    thread::spawn(move || {
        let Ok((b, _)) = listen.accept() else { return };
        let start = Instant::now();
        let a = loop {
            match TcpStream::connect(("127.0.0.1", a_port)) {
                Ok(a) => break a,
                Err(_) if start.elapsed() < WAIT => thread::sleep(Duration::from_millis(100)),
                Err(_) => return,
            }
        };
        let (a2, b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
        let s2 = Arc::clone(&s);
        let t = thread::spawn(move || pump(a2, b2, s2, true, tamper));
        pump(b, a, s, false, Tamper::None);
        let _ = t.join();
    });
    seen
}

struct Node {
    name: &'static str,
    logs: PathBuf,
    child: Child,
}

fn launch(
    dir: &Path,
    bundle: &Path,
    name: &'static str,
    peer: &'static str,
    link: [String; 2],
) -> Node {
    let logs = dir.join(name);
    let child = Command::new(workspace_bin("omega-host", "omega"))
        .arg("run")
        .arg("--image")
        .arg(image())
        .arg("--bundle")
        .arg(bundle)
        .arg("--log-dir")
        .arg(&logs)
        .args(&link)
        .args(["--peer-node", name, "--peer", peer, "--peer-credential"])
        .arg(dir.join(format!("{name}.credential")))
        .args(["--connect-timeout", "120"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting omega run");
    Node { name, logs, child }
}

/// The test's fleet coordinator.
struct Coordinator {
    key: SigningKey,
    /// The fleet's owner, who endorses `key` for owner-rooted bundles (`fleet.owner`).
    owner: SigningKey,
    /// The image's launch digest (what a coordinator writes into the credential).
    digest: Vec<u8>,
}

impl Coordinator {
    fn new() -> Self {
        let o = measurements([
            "digest".to_string(),
            "--image".into(),
            image().display().to_string(),
            // `omega run`'s defaults.
            "--vcpus".into(),
            "1".into(),
            "--vcpu-type".into(),
            "EPYC-v4".into(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let digest = hex::decode(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
        Coordinator {
            key: SigningKey::from_seed([0x5c; 32]).unwrap(),
            owner: SigningKey::from_seed([0x0e; 32]).unwrap(),
            digest,
        }
    }

    /// `manifest.json` of the bundle in `dir` names `fleet` and this coordinator, or (when
    /// `owner_rooted`) the fleet's owner.
    fn join(&self, dir: &Path, fleet: &str, owner_rooted: bool) {
        let path = dir.join(omega_bundle::MANIFEST);
        let mut m = omega_bundle::Manifest::parse(&std::fs::read(&path).unwrap()).unwrap();
        m.fleet = Some(if owner_rooted {
            omega_bundle::FleetEntry {
                id: fleet.into(),
                coordinator: String::new(),
                owner: Some(hex::encode(self.owner.public())),
            }
        } else {
            omega_bundle::FleetEntry {
                id: fleet.into(),
                coordinator: hex::encode(self.key.public()),
                owner: None,
            }
        });
        std::fs::write(path, m.to_json()).unwrap();
    }

    /// Waits for `node`'s `peer` evidence, verifies it, and writes the node's credential
    /// (of `fleet`) where its launcher waits for it: binding the attested monitor and peer
    /// keys, or (`replayed`) the keys of an earlier boot.
    /// Owner-rooted (`setup.owner_rooted`): the credential is presented with the owner's
    /// endorsement of this coordinator's key.
    fn admit(&self, dir: &Path, node: &Node, fleet: &str, setup: Setup) {
        let replayed = setup.replayed;
        let evidence = node.logs.join("evidence").join("peer.bin");
        let nonce = node.logs.join("nonce.hex");
        let start = Instant::now();
        let key = |out: &str, field: &str| -> Option<[u8; 32]> {
            let l = out.lines().find_map(|l| l.strip_prefix(field))?;
            hex::decode(l.trim()).ok()?.try_into().ok()
        };
        let (monitor_key, peer_key) = loop {
            assert!(
                start.elapsed() < WAIT,
                "no verifiable peer evidence from {}",
                node.name
            );
            if let (true, Ok(n)) = (evidence.is_file(), std::fs::read_to_string(&nonce)) {
                let o = measurements([
                    "verify-evidence".into(),
                    "--evidence".into(),
                    evidence.display().to_string(),
                    "--principal".into(),
                    "peer".into(),
                    "--nonce".into(),
                    n.trim().to_string(),
                    "--allow-unattested".into(),
                ]);
                let out = String::from_utf8_lossy(&o.stdout).into_owned();
                if o.status.success()
                    && let (Some(m), Some(p)) =
                        (key(&out, "monitor_key: "), key(&out, "peer_key: "))
                {
                    break (m, p);
                }
            }
            thread::sleep(Duration::from_millis(200));
        };
        let (node_key, peer_key) = if replayed {
            ([0x11; 32], [0x22; 32])
        } else {
            (monitor_key, peer_key)
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let signed = Credential {
            format: CREDENTIAL_FORMAT,
            fleet_id: fleet.into(),
            node_id: node.name.into(),
            role: "worker".into(),
            node_key,
            peer_key: Some(peer_key),
            // No hardware behind these unattested runs: the lab's TEE kind.
            tee: Tee::Simulated,
            launch_digest: self.digest.clone(),
            not_before: now,
            not_after: now + 600,
            serial: 1,
            policy_version: 1,
        }
        .sign(&self.key)
        .unwrap();
        let signed = if setup.owner_rooted {
            let endorsement = Endorsement {
                format: ENDORSEMENT_FORMAT,
                fleet_id: fleet.into(),
                coordinator: self.key.public(),
                boot_id: [0xc0; 16],
                not_before: now - 60,
                not_after: now + 3600,
            }
            .sign(&self.owner)
            .unwrap();
            Presented {
                endorsement,
                credential: signed,
            }
            .encode()
        } else {
            signed
        };
        let tmp = dir.join(format!("{}.credential.tmp", node.name));
        std::fs::write(&tmp, signed).unwrap();
        std::fs::rename(&tmp, dir.join(format!("{}.credential", node.name))).unwrap();
    }
}

/// Waits for the launcher; returns its stdout and stderr. Kills it after [`WAIT`].
fn finish(mut node: Node) -> (String, String) {
    let start = Instant::now();
    while node.child.try_wait().unwrap().is_none() {
        if start.elapsed() > WAIT {
            let _ = node.child.kill();
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let o = node.child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        o.status.success(),
        "{}: omega run failed\n{out}\n{err}",
        node.name
    );
    (out, err)
}

/// A log's `PEER_SESSION` entries: (decision, name).
type Sessions = Vec<(Decision, String)>;

/// A `PEER_MESSAGE` entry: (local agent, remote agent, decision, rule, content).
type PeerMessage = (String, String, Decision, String, Option<[u8; 32]>);

/// A node's verified log and console.
struct Ended {
    sessions: Sessions,
    entries: Vec<Entry>,
    out: String,
}

/// One log entry, owned.
struct Entry {
    agent: u32,
    action: Action,
    target: u32,
    decision: Decision,
    rule: u32,
    name: String,
    content: Option<[u8; 32]>,
}

impl Ended {
    /// The name a `DEFINE_*` entry of `kind` gives `id`.
    fn name_of(&self, kind: u32, id: u32) -> String {
        self.entries
            .iter()
            .find(|e| e.action == Action::Lifecycle && e.rule == kind && e.target == id)
            .map_or_else(|| format!("#{id}"), |e| e.name.clone())
    }

    /// `PEER_MESSAGE` entries: (local agent, remote agent, decision, rule, content).
    fn peer_messages(&self) -> Vec<PeerMessage> {
        self.entries
            .iter()
            .filter(|e| e.action == Action::Lifecycle && e.rule == lifecycle::PEER_MESSAGE)
            .map(|e| {
                (
                    self.name_of(lifecycle::DEFINE_AGENT, e.agent),
                    self.name_of(lifecycle::DEFINE_TARGET, e.target),
                    e.decision,
                    e.name.clone(),
                    e.content,
                )
            })
            .collect()
    }

    /// `agent`'s policy decisions on messages: (target, decision, rule).
    fn sends_of(&self, agent: &str) -> Vec<(String, Decision, String)> {
        self.entries
            .iter()
            .filter(|e| e.action == Action::Message)
            .filter(|e| self.name_of(lifecycle::DEFINE_AGENT, e.agent) == agent)
            .map(|e| {
                (
                    self.name_of(lifecycle::DEFINE_TARGET, e.target),
                    e.decision,
                    self.name_of(lifecycle::DEFINE_RULE, e.rule),
                )
            })
            .collect()
    }

    /// `PEER_CREDENTIAL` entries: (decision, name).
    fn credentials(&self) -> Sessions {
        self.entries
            .iter()
            .filter(|e| e.action == Action::Lifecycle && e.rule == lifecycle::PEER_CREDENTIAL)
            .map(|e| (e.decision, e.name.clone()))
            .collect()
    }

    /// Whether the guest console has a line containing `text`.
    fn said(&self, text: &str) -> bool {
        self.out.lines().any(|l| l.contains(text))
    }
}

/// The verified log of a node that finished.
fn ended(name: &str, stdout: String, logs: &Path) -> Ended {
    let sessions = peer_sessions(name, &stdout, logs);
    let stored = std::fs::read(logs.join("provenance.log")).unwrap();
    let entries = EntryIter::new(&stored)
        .map(|e| e.expect("a verified log decodes").1)
        .map(|e| Entry {
            agent: e.agent,
            action: e.action,
            target: e.target,
            decision: e.decision,
            rule: e.rule,
            name: String::from_utf8_lossy(e.name.unwrap_or_default()).into_owned(),
            content: e.content,
        })
        .collect();
    Ended {
        sessions,
        entries,
        out: stdout,
    }
}

/// `PEER_SESSION` entries of a log that verifies as the launcher printed: (decision, name).
fn peer_sessions(name: &str, stdout: &str, logs: &Path) -> Sessions {
    let cmd = printed_verifier_commands(stdout)
        .into_iter()
        .find(|c| c[0] == "verify-log")
        .unwrap_or_else(|| panic!("{name}: no verify-log command printed\n{stdout}"));
    let o = measurements(&cmd);
    assert!(
        o.status.success(),
        "{name}: the log does not verify\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let stored = std::fs::read(logs.join("provenance.log")).unwrap();
    EntryIter::new(&stored)
        .map(|e| e.expect("a verified log decodes").1)
        .filter(|e| e.action == Action::Lifecycle && e.rule == lifecycle::PEER_SESSION)
        .map(|e| {
            (
                e.decision,
                String::from_utf8_lossy(e.name.unwrap_or_default()).into_owned(),
            )
        })
        .collect()
}

/// How a pair's nodes are set up.
#[derive(Clone, Copy)]
struct Setup {
    /// The proxy tampers with A's first record.
    /// What the relay does to A's first record.
    tamper: Tamper,
    /// A's fleet (its bundle's and its credential's); B's is `lab`.
    fleet_a: &'static str,
    /// Both hosts hand their monitors credentials of an earlier boot.
    replayed: bool,
    /// Both bundles name the fleet's owner; credentials come with its endorsement.
    owner_rooted: bool,
}

const CLEAN: Setup = Setup {
    tamper: Tamper::None,
    fleet_a: "lab",
    replayed: false,
    owner_rooted: false,
};

/// Two images, one peer session between them, A running `bundles[0]`, B `bundles[1]`
/// (copied into `dir`, joined to their fleets). Returns each node's verified log and
/// console, and what the relay carried.
fn pair(
    dir: &Path,
    coordinator: &Coordinator,
    bundles: [&Path; 2],
    setup: Setup,
) -> (Ended, Ended, Relayed) {
    let fleets = [setup.fleet_a, "lab"];
    let mut copies = Vec::new();
    for (i, src) in bundles.iter().enumerate() {
        let dst = dir.join(format!("bundle-{i}"));
        std::fs::create_dir_all(&dst).unwrap();
        for f in std::fs::read_dir(src).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), dst.join(f.file_name())).unwrap();
        }
        coordinator.join(&dst, fleets[i], setup.owner_rooted);
        copies.push(dst);
    }
    let a_port = free_port();
    let relay = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_port = relay.local_addr().unwrap().port();
    let seen = proxy(relay, a_port, setup.tamper);
    let a = launch(
        dir,
        &copies[0],
        "node-a",
        "node-b",
        ["--peer-listen".into(), format!("127.0.0.1:{a_port}")],
    );
    let b = launch(
        dir,
        &copies[1],
        "node-b",
        "node-a",
        ["--peer-connect".into(), format!("127.0.0.1:{relay_port}")],
    );
    coordinator.admit(dir, &a, fleets[0], setup);
    coordinator.admit(dir, &b, fleets[1], setup);
    let (a_logs, b_logs) = (a.logs.clone(), b.logs.clone());
    let (a_out, a_err) = finish(a);
    let (b_out, b_err) = finish(b);
    let (ea, eb) = (
        ended("node-a", a_out, &a_logs),
        ended("node-b", b_out, &b_logs),
    );
    eprintln!(
        "node-a: {:?} {:?}\nnode-b: {:?} {:?}",
        ea.credentials(),
        ea.sessions,
        eb.credentials(),
        eb.sessions
    );
    // (A node whose peer gave up may end before its own credential comes.)
    if ea.credentials().is_empty() && eb.credentials().is_empty() {
        panic!(
            "no PEER_CREDENTIAL entries\nA:\n{}\n{a_err}\nB:\n{}\n{b_err}",
            ea.out, eb.out
        );
    }
    let relayed = std::mem::take(&mut *seen.lock().unwrap());
    (ea, eb, relayed)
}

#[test]
fn two_monitors_bring_a_peer_channel_up_through_an_untrusted_relay() {
    if !qemu_present() {
        return;
    }
    // Built before the clocks start (the pins wait for it).
    workspace_bin("measurements", "measurements");
    workspace_bin("omega-host", "omega");
    let dir = tempfile::tempdir().unwrap();
    // An agent that returns at once: the monitors' work there is the peer session.
    let bundle = dir.path().join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    for (name, bytes) in common::agent_bundle("peer", &["quick"]) {
        std::fs::write(bundle.join(name), bytes).unwrap();
    }
    // The cross-image demo: A's courier, B's inbox (agents/, built for wasm32).
    let courier = dir.path().join("courier");
    let inbox = dir.path().join("inbox");
    common::agents_bundle(&courier, common::POLICY_A, &["courier"]);
    common::agents_bundle(&inbox, common::POLICY_B, &["inbox"]);

    let coordinator = Coordinator::new();
    let t = Instant::now();
    let clean = dir.path().join("clean");
    std::fs::create_dir_all(&clean).unwrap();
    let (ea, eb, relayed) = pair(&clean, &coordinator, [&courier, &inbox], CLEAN);
    assert_eq!(
        (ea.credentials(), eb.credentials()),
        (
            vec![(Decision::Allow, "node-a/worker #1".to_string())],
            vec![(Decision::Allow, "node-b/worker #1".to_string())]
        )
    );
    let (a, b) = (&ea.sessions, &eb.sessions);
    assert_eq!(
        a,
        &[(Decision::Allow, "node-b".to_string())],
        "node-a's log"
    );
    assert_eq!(
        b,
        &[(Decision::Allow, "node-a".to_string())],
        "node-b's log"
    );
    // The sending gate: each send decided and logged by A's policy first.
    assert_eq!(
        ea.sends_of("courier"),
        [
            ("node-b/vault".into(), Decision::Allow, "to_node_b".into()),
            ("node-b/archive".into(), Decision::Deny, "no_archive".into()),
            ("node-b/inbox".into(), Decision::Allow, "to_node_b".into()),
        ],
        "{}",
        ea.out
    );
    // The receiving gate's verdicts, logged at both ends with the same content digest.
    let ma = ea.peer_messages();
    let mb = eb.peer_messages();
    eprintln!("A's PEER_MESSAGE: {ma:?}\nB's PEER_MESSAGE: {mb:?}");
    let strip = |m: &[PeerMessage]| {
        m.iter()
            .map(|(l, r, d, rule, _)| (l.clone(), r.clone(), *d, rule.clone()))
            .collect::<Vec<_>>()
    };
    let s = |x: &str| x.to_string();
    assert_eq!(
        strip(&ma),
        [
            (
                s("courier"),
                s("node-b/vault"),
                Decision::Deny,
                s("no_vault")
            ),
            (
                s("courier"),
                s("node-b/inbox"),
                Decision::Allow,
                s("from_node_a")
            ),
        ],
        "{}",
        ea.out
    );
    assert_eq!(
        strip(&mb),
        [
            (
                s("vault"),
                s("node-a/courier"),
                Decision::Deny,
                s("no_vault")
            ),
            (
                s("inbox"),
                s("node-a/courier"),
                Decision::Allow,
                s("from_node_a")
            ),
        ],
        "{}",
        eb.out
    );
    for (x, y) in ma.iter().zip(&mb) {
        assert!(x.4.is_some() && x.4 == y.4, "the same message at both ends");
    }
    assert_ne!(ma[0].4, ma[1].4);
    // What the agents saw.
    for line in [
        "courier: node-b/vault: denied (node-b:no_vault)",
        "courier: node-b/archive: denied (no_archive)",
        "courier: node-b/inbox: delivered",
    ] {
        assert!(ea.said(line), "node-a: no `{line}`\n{}", ea.out);
    }
    assert!(
        eb.said("inbox: from node-a/courier: hello from another image"),
        "{}",
        eb.out
    );
    // The round trip (send → B's gate → outcome back) of the last message, sent with the
    // session up, as the courier timed it on A's monitor clock.
    for l in ea.out.lines().filter(|l| l.contains("courier: ")) {
        eprintln!("node-a: {}", l.trim_end());
    }
    let rtt: u64 = ea
        .out
        .lines()
        .find_map(|l| l.split("courier: node-b/inbox: delivered (").nth(1))
        .and_then(|r| r.trim_end().trim_end_matches('"').strip_suffix(" ms)"))
        .and_then(|ms| ms.parse().ok())
        .expect("the courier timed its delivered message");
    eprintln!("cross-image round trip (courier -> node-b/inbox -> outcome): {rtt} ms");
    assert!(!relayed.a_to_b.is_empty() && !relayed.b_to_a.is_empty());
    for (dir_name, bytes) in [("A→B", &relayed.a_to_b), ("B→A", &relayed.b_to_a)] {
        for needle in [&b"node-a"[..], b"node-b", b"courier", b"hello from another"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{dir_name}: {} in the clear on the relay",
                String::from_utf8_lossy(needle)
            );
        }
    }
    eprintln!("clean pair: {:?}", t.elapsed());

    let t = Instant::now();
    let tampered = dir.path().join("tampered");
    std::fs::create_dir_all(&tampered).unwrap();
    let (ea, eb, _) = pair(
        &tampered,
        &coordinator,
        [&courier, &bundle],
        Setup {
            tamper: Tamper::Flip,
            ..CLEAN
        },
    );
    let (a, b) = (&ea.sessions, &eb.sessions);
    assert!(
        a.contains(&(Decision::Allow, "node-b".to_string())),
        "{a:?}"
    );
    assert!(
        b.contains(&(Decision::Allow, "node-a".to_string())),
        "{b:?}"
    );
    assert!(
        b.iter()
            .any(|(d, n)| *d == Decision::Error && n.contains("does not decrypt")),
        "node-b logs the tampered record: {b:?}"
    );
    // The courier's first message was the flipped record: it is told node-b is
    // unreachable (logged as an error), and nothing of it is delivered.
    let ma = ea.peer_messages();
    assert!(
        !ma.is_empty() && ma.iter().all(|m| m.2 == Decision::Error),
        "{ma:?}\n{}",
        ea.out
    );
    assert!(ea.said("courier: node-b/vault: unavailable"), "{}", ea.out);
    assert!(eb.peer_messages().is_empty());
    eprintln!("tampered pair: {:?}", t.elapsed());

    // The relay sends A's first record twice: B takes the first, refuses the copy as a
    // replay and logs the broken session; nothing is delivered twice.
    let t = Instant::now();
    let replay = dir.path().join("replayed-record");
    std::fs::create_dir_all(&replay).unwrap();
    let (ea, eb, _) = pair(
        &replay,
        &coordinator,
        [&courier, &bundle],
        Setup {
            tamper: Tamper::Replay,
            ..CLEAN
        },
    );
    let b = &eb.sessions;
    assert!(
        b.contains(&(Decision::Allow, "node-a".to_string()))
            && b.iter()
                .any(|(d, n)| *d == Decision::Error && n.contains("replayed")),
        "node-b logs the replayed record: {b:?}\n{}",
        eb.out
    );
    assert!(
        eb.peer_messages().len() <= 1,
        "the record counted once at most: {:?}",
        eb.peer_messages()
    );
    assert!(!ea.said("courier: node-b/inbox: delivered"), "{}", ea.out);
    eprintln!("replayed-record pair: {:?}", t.elapsed());

    // A is of another fleet under the same coordinator: A accepts its own credential, B
    // refuses A's in the handshake; A, left waiting for B's Finish, sees the relay end.
    // Both log the refusal, no session is up.
    let t = Instant::now();
    let other = dir.path().join("other-fleet");
    std::fs::create_dir_all(&other).unwrap();
    let (ea, eb, _) = pair(
        &other,
        &coordinator,
        [&bundle, &bundle],
        Setup {
            fleet_a: "lab-2",
            ..CLEAN
        },
    );
    assert_eq!(ea.credentials()[0].0, Decision::Allow, "{}", ea.out);
    let (a, b) = (&ea.sessions, &eb.sessions);
    assert!(
        !b.is_empty()
            && b.iter()
                .all(|(d, n)| *d == Decision::Deny && n.contains("not admitted")),
        "node-b refuses a node of another fleet: {b:?}"
    );
    assert!(
        !a.is_empty() && a.iter().all(|(d, _)| *d == Decision::Deny),
        "node-a logs the refused handshake: {a:?}"
    );
    eprintln!("other-fleet pair: {:?}", t.elapsed());

    // Credentials of an earlier boot: each monitor refuses its own, no channel starts.
    let t = Instant::now();
    let replayed = dir.path().join("replayed");
    std::fs::create_dir_all(&replayed).unwrap();
    let (ea, eb, relayed) = pair(
        &replayed,
        &coordinator,
        [&bundle, &bundle],
        Setup {
            replayed: true,
            ..CLEAN
        },
    );
    // A's credential is written first; B may see A's monitor go (the relay ends) before
    // its own comes, and then ends without a channel either.
    let refused = [(
        Decision::Deny,
        "credential binds another monitor key".to_string(),
    )];
    assert_eq!(ea.credentials(), refused, "{}", ea.out);
    assert!(
        eb.credentials() == refused
            || eb.credentials().is_empty()
                && eb.said("the relay ended before the credential; no session"),
        "{:?}\n{}",
        eb.credentials(),
        eb.out
    );
    assert!(ea.sessions.is_empty() && eb.sessions.is_empty());
    assert!(relayed.a_to_b.is_empty() && relayed.b_to_a.is_empty());
    eprintln!("replayed-credential pair: {:?}", t.elapsed());

    // Owner-rooted bundles (`fleet.owner`): each credential comes with the owner's
    // endorsement of the coordinator key; both monitors accept theirs and the session
    // comes up under `CredentialAuthority::rooted` (refusals: `fleet/src/tests.rs`).
    let t = Instant::now();
    let owner = dir.path().join("owner-rooted");
    std::fs::create_dir_all(&owner).unwrap();
    let (ea, eb, _) = pair(
        &owner,
        &coordinator,
        [&bundle, &bundle],
        Setup {
            owner_rooted: true,
            ..CLEAN
        },
    );
    assert_eq!(
        (ea.credentials(), eb.credentials()),
        (
            vec![(Decision::Allow, "node-a/worker #1".to_string())],
            vec![(Decision::Allow, "node-b/worker #1".to_string())]
        ),
        "{}\n{}",
        ea.out,
        eb.out
    );
    assert_eq!(ea.sessions, [(Decision::Allow, "node-b".to_string())]);
    assert_eq!(eb.sessions, [(Decision::Allow, "node-a".to_string())]);
    eprintln!("owner-rooted pair: {:?}", t.elapsed());
}
