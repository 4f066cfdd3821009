//! The two gates of a message across images (docs/fleet.md): the sending gate decides a
//! `send` to `node/agent` under this image's policy (labels and flow as for a local send)
//! and hands only an allowed message out, parking the agent until the outcome; the
//! receiving gate decides a message from `node/agent` under this image's policy with the
//! labels it carries, and refuses what it cannot account for.

mod common;

use common::*;
use omega_agent_abi as abi;
use omega_runtime::{Answer, RemoteMessage, Status};
use sha2::{Digest, Sha256};

const DENIED: i32 = -(abi::ErrorCode::Denied as i32);

fn remote(name: &'static str, cleared: u64) -> Declared {
    Declared {
        name,
        module: wasm(&script(&[])),
        cleared,
    }
}

#[test]
fn the_sending_gate_decides_before_anything_leaves_and_parks_until_the_outcome() {
    let send = || Step::Call("send", send_req("node-b/inbox", "hello"));
    let courier = script(&[
        send(),
        send(),
        Step::Call("data_read", read_req("ehr", "/patients/42", 64)),
        send(),
        Step::Call("send", send_req("node-b/unknown", "hello")),
    ]);
    let agents = vec![
        Declared {
            name: "courier",
            module: wasm(&courier),
            cleared: 0,
        },
        // Not cleared for phi: a tainted context cannot send to it.
        remote("node-b/inbox", 0),
    ];
    let mut rt = runtime(&agents);
    rt.monitor_mut().mode = EgressMode::Tickets;
    let id = rt.load(&spec("courier", &agents[0].module)).unwrap();
    rt.run_until_idle(100);
    // Allowed by `send_ok`: out as a message, the agent parked on it.
    assert_eq!(rt.status(id), Some(&Status::Parked));
    assert_eq!(
        rt.monitor().egress,
        [("courier".to_string(), "message node-b/inbox []".to_string())]
    );
    let t = rt.monitor().tickets[0];
    assert!(rt.deliver(t, &Answer::Sent));
    rt.run_until_idle(100);
    // The second is refused by the other image's gate.
    let t = rt.monitor().tickets[1];
    assert!(rt.deliver(t, &Answer::Denied("node-b:no_vault".into())));
    rt.run_until_idle(100);
    let r = rets(&rt, id, 5);
    assert_eq!(r[0], 0, "delivered: a send's empty answer");
    assert_eq!(r[1], DENIED);
    assert!(r[2] > 0, "the read");
    // After reading phi, the flow rule refuses the remote destination as a local one:
    // nothing more leaves.
    assert_eq!(r[3], DENIED);
    assert_eq!(r[4], DENIED, "an undeclared remote agent");
    assert_eq!(rt.monitor().egress.len(), 2);
    let rules: Vec<(String, String)> = rt
        .monitor()
        .decisions_of("courier")
        .into_iter()
        .filter(|d| d.target.starts_with("node-b/"))
        .map(|d| (d.target, d.rule))
        .collect();
    assert_eq!(
        rules,
        [
            ("node-b/inbox".into(), "send_ok".into()),
            ("node-b/inbox".into(), "send_ok".into()),
            ("node-b/inbox".into(), "flow:phi".into()),
            ("node-b/unknown".into(), "unknown-target".into()),
        ]
    );
}

#[test]
fn the_receiving_gate_decides_with_the_carried_labels_and_the_pinned_module() {
    let inbox = script(&[Step::Call("recv", recv_req(true))]);
    let agents = vec![
        Declared {
            name: "inbox",
            module: wasm(&inbox),
            cleared: PHI,
        },
        Declared {
            name: "plain",
            module: wasm(&inbox),
            cleared: 0,
        },
        remote("node-a/courier", 0),
        remote("loner", 0),
    ];
    let courier_hash: [u8; 32] = Sha256::digest(&agents[2].module).into();
    let mut rt = runtime(&agents);
    let id = rt.load(&spec("inbox", &agents[0].module)).unwrap();
    rt.run_until_idle(100);
    let mut parts = abi::heapless::Vec::new();
    parts.push(abi::Part::Text { text: "across" }).unwrap();
    let message = enc(&abi::Message {
        message_id: "m1",
        context_id: None,
        role: abi::Role::User,
        parts,
    });
    let msg = |from, module, to, labels| RemoteMessage {
        from,
        module,
        to,
        labels,
        message: &message,
    };
    let other = [9u8; 32];
    let refused = |v: omega_runtime::RemoteVerdict| {
        assert!(!v.delivered, "{v:?}");
        v.rule
    };
    // Another module than the one pinned for node-a/courier.
    assert_eq!(
        refused(rt.receive_remote(&msg("node-a/courier", &other, "inbox", &[]))),
        "agent-pin"
    );
    // A label this policy does not know; a destination not cleared for phi.
    assert_eq!(
        refused(rt.receive_remote(&msg("node-a/courier", &courier_hash, "inbox", &["pii"]))),
        "label:pii"
    );
    assert_eq!(
        refused(rt.receive_remote(&msg("node-a/courier", &courier_hash, "plain", &["phi"]))),
        "flow:phi"
    );
    // Not `node/agent`, or for another image: never passes for a local message.
    assert_eq!(
        refused(rt.receive_remote(&msg("loner", &courier_hash, "inbox", &[]))),
        "bad-message"
    );
    assert_eq!(
        refused(rt.receive_remote(&msg("node-a/courier", &courier_hash, "node-c/x", &[]))),
        "bad-message"
    );
    // Allowed, but `plain` does not run.
    assert_eq!(
        refused(rt.receive_remote(&msg("node-a/courier", &courier_hash, "plain", &[]))),
        "no-agent"
    );
    assert_eq!(rt.status(id), Some(&Status::Parked));
    // Allowed and delivered: the receiver takes on the carried label.
    let v = rt.receive_remote(&msg("node-a/courier", &courier_hash, "inbox", &["phi"]));
    assert!(v.delivered, "{v:?}");
    assert_eq!(v.rule, "send_ok");
    rt.run_until_idle(100);
    let len = match rt.status(id) {
        Some(Status::Exited(n)) => *n as usize,
        s => panic!("{s:?}"),
    };
    let bytes = out(&rt, id, len);
    let got: abi::Delivered<'_> = abi::decode(&bytes).unwrap();
    assert_eq!(got.from, "node-a/courier");
    assert_eq!(got.labels.as_slice(), &["phi"]);
    assert_eq!(rt.agent_labels(id), PHI);
}

/// A peer whose own policy lets its agent send without limit still meets this image's
/// `limit`s: counted per remote sender, in this image's windows.
#[test]
fn a_remote_sender_meets_this_images_rate_limits() {
    let agents = vec![
        Declared {
            name: "inbox",
            module: wasm(&script(&[])),
            cleared: 0,
        },
        remote("node-a/courier", 0),
        remote("node-c/courier", 0),
    ];
    let mut p = policy(&agents).clone();
    p.limits.push(omega_policy::Limit {
        name: "remote_rate",
        action: omega_policy::RuleAction::Send,
        target: None,
        agents: Some(0b110),
        max: 2,
        window_secs: 60,
    });
    p.validate().unwrap();
    let p: &'static omega_policy::Policy<'static> = Box::leak(Box::new(p));
    let mut rt = omega_runtime::Runtime::new(
        p,
        TestMonitor::default(),
        omega_runtime::RuntimeConfig::default(),
    );
    rt.load(&spec("inbox", &agents[0].module)).unwrap();
    let message = enc(&abi::Message {
        message_id: "m",
        context_id: None,
        role: abi::Role::User,
        parts: abi::heapless::Vec::new(),
    });
    let hash: [u8; 32] = Sha256::digest(&agents[1].module).into();
    let send = |rt: &mut omega_runtime::Runtime<'static, TestMonitor>, from| {
        rt.receive_remote(&RemoteMessage {
            from,
            module: &hash,
            to: "inbox",
            labels: &[],
            message: &message,
        })
    };
    let verdicts: Vec<(bool, String)> = ["node-a/courier"; 3]
        .into_iter()
        .chain(["node-c/courier"])
        .map(|from| {
            let v = send(&mut rt, from);
            (v.delivered, v.rule)
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            (true, "send_ok".to_string()),
            (true, "send_ok".to_string()),
            (false, "remote_rate".to_string()),
            // Another sender has its own count.
            (true, "send_ok".to_string()),
        ]
    );
    // The next window: node-a's courier may send again.
    rt.monitor_mut().time += 60_000;
    let v = send(&mut rt, "node-a/courier");
    assert!(v.delivered, "{v:?}");
}
