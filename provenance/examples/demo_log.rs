//! Writes a sample provenance log for `measurements verify-log`:
//! `cargo run -p omega-provenance --example demo_log -- OUTDIR [N]` produces
//! OUTDIR/entries.bin, OUTDIR/checkpoint (size N), OUTDIR/checkpoint.old (size N/2) and
//! OUTDIR/log.vkey. The key seed is fixed: for demonstrations only.

use omega_provenance::entry::{content_digest, lifecycle};
use omega_provenance::{Action, AppendError, Decision, Log, LogKey, Record};

fn main() {
    let mut args = std::env::args().skip(1);
    let out = std::path::PathBuf::from(args.next().expect("usage: demo_log OUTDIR [N]"));
    let n: u64 = args.next().map(|s| s.parse().expect("N")).unwrap_or(1000);
    std::fs::create_dir_all(&out).unwrap();
    let key = LogKey::from_seed("omega.example/log", [0x42; 32]).unwrap();
    let mut log = Log::<4096>::new(0);
    let mut stream = Vec::new();
    let mut buf = [0u8; 4096];
    let mut push = |log: &mut Log<4096>, r: Record<'_>, stream: &mut Vec<u8>| loop {
        match log.append(&r) {
            Ok(_) => return,
            // Backpressure: the monitor would block the agent; here we drain and retry.
            Err(AppendError::OutboxFull) => {
                let k = log.drain(&mut buf);
                stream.extend_from_slice(&buf[..k]);
            }
            Err(e) => panic!("{e}"),
        }
    };
    let lc = |rule, target, name: &'static [u8]| Record {
        time: 0,
        agent: 0,
        action: Action::Lifecycle,
        target,
        decision: Decision::Allow,
        rule,
        labels: 0,
        content: None,
        name: Some(name),
    };
    push(
        &mut log,
        lc(lifecycle::LOG_START, 0, b"omega.example/log"),
        &mut stream,
    );
    push(
        &mut log,
        lc(lifecycle::DEFINE_AGENT, 0, b"triage"),
        &mut stream,
    );
    push(
        &mut log,
        lc(lifecycle::DEFINE_TARGET, 0, b"model:smollm2"),
        &mut stream,
    );
    push(
        &mut log,
        lc(lifecycle::DEFINE_TARGET, 1, b"tool:ehr.lookup"),
        &mut stream,
    );
    push(
        &mut log,
        lc(lifecycle::DEFINE_RULE, 0, b"allow-phi-to-local-model"),
        &mut stream,
    );
    push(
        &mut log,
        lc(lifecycle::DEFINE_RULE, 1, b"deny-phi-egress"),
        &mut stream,
    );
    push(
        &mut log,
        lc(lifecycle::DEFINE_LABEL, 0, b"phi"),
        &mut stream,
    );
    let mut old_note = None;
    let mut t = 0;
    while log.size() < n {
        let i = log.size();
        t += 1 + i % 17;
        let tool = i.is_multiple_of(3);
        push(
            &mut log,
            Record {
                time: t,
                agent: 0,
                action: if tool { Action::Tool } else { Action::Infer },
                target: tool as u32,
                decision: if tool && i.is_multiple_of(2) {
                    Decision::Deny
                } else {
                    Decision::Allow
                },
                rule: (tool && i.is_multiple_of(2)) as u32,
                labels: 1,
                content: i
                    .is_multiple_of(4)
                    .then(|| content_digest(format!("req {i}").as_bytes(), b"resp")),
                name: None,
            },
            &mut stream,
        );
        if log.size() == n / 2 {
            old_note = Some(log.checkpoint(&key));
        }
    }
    loop {
        let k = log.drain(&mut buf);
        if k == 0 {
            break;
        }
        stream.extend_from_slice(&buf[..k]);
    }
    std::fs::write(out.join("entries.bin"), &stream).unwrap();
    std::fs::write(out.join("checkpoint"), log.checkpoint(&key)).unwrap();
    if let Some(o) = old_note {
        std::fs::write(out.join("checkpoint.old"), o).unwrap();
    }
    std::fs::write(out.join("log.vkey"), key.verifier().encode() + "\n").unwrap();
    println!(
        "{} entries, {} bytes -> {}",
        log.size(),
        stream.len(),
        out.display()
    );
}
