//! The monitor's service loop over the host channel: receives the bundle (hashing every
//! file), keeps the provenance log and streams it to the host, answers echo requests, and
//! shuts down when the host asks.
//!
//! The Log stream carries exactly the log's at-rest byte stream (what `Log::drain`
//! produces); the verifier key and signed checkpoints travel as Control messages.

use alloc::boxed::Box;

use omega_arch::exit::{ExitCode, exit};
use omega_arch::serial_println;
use omega_bundle::{BundleReceiver, Progress};
use omega_provenance::entry::lifecycle;
use omega_provenance::{Action, Decision, Log, LogKey, Record};
use omega_wire::Stream;
use omega_wire::msg::{self, ControlMsg};

use crate::channel::{Channel, Event};
use crate::monitor::{Monitor, fatal};
use crate::{time, virtio};

/// Origin (and key name) of the monitor's log.
pub const LOG_ORIGIN: &str = "omega-monitor";
const OUTBOX: usize = 16 * 1024;
/// Polls to wait for the host's HelloAck (about a few seconds under TCG).
const HELLO_SPINS: u64 = 20_000_000;

fn send_control(ch: &mut Channel, m: &ControlMsg<'_>) {
    let mut buf = alloc::vec![0u8; 4096];
    match msg::encode(m, &mut buf) {
        Ok(bytes) => {
            let bytes = bytes.to_vec();
            ch.send(Stream::Control, &bytes)
                .unwrap_or_else(|e| fatal("host channel (control)", e));
        }
        Err(e) => fatal("encoding a control message", e),
    }
}

struct Provenance {
    log: Box<Log<OUTBOX>>,
    key: LogKey,
    next_target: u32,
    /// Log bytes sent to the host, and acknowledged by it as durably stored.
    sent: u64,
    acked: u64,
}

impl Provenance {
    fn now(m: &Monitor) -> u64 {
        m.clock
            .as_ref()
            .map(|c| time::now_ns(c) / 1_000_000)
            .unwrap_or(0)
    }

    fn append(&mut self, ch: &mut Channel, r: &Record<'_>) {
        // SECURITY: never lose a record; a full outbox is drained (waiting on the host's
        // credit if need be) before the append is retried.
        loop {
            match self.log.append(r) {
                Ok(_) => return,
                Err(omega_provenance::AppendError::OutboxFull) => self.flush(ch),
                Err(e) => fatal("provenance log", format_args!("{e:?}")),
            }
        }
    }

    /// Sends every pending entry to the host.
    fn flush(&mut self, ch: &mut Channel) {
        if self.log.pending() == 0 {
            return;
        }
        let mut buf = alloc::vec![0u8; self.log.pending()];
        let n = self.log.drain(&mut buf);
        ch.send(Stream::Log, &buf[..n])
            .unwrap_or_else(|e| fatal("host channel (log)", e));
        self.sent += n as u64;
    }

    fn checkpoint(&mut self, ch: &mut Channel) {
        self.flush(ch);
        let note = self.log.checkpoint(&self.key);
        send_control(ch, &ControlMsg::Checkpoint { note: &note });
    }
}

/// Serves the host channel until the host asks to shut down. Returns if there is no
/// channel device.
pub fn run(m: &mut Monitor, echo_all_streams: bool) {
    let console = match virtio::probe() {
        Ok(c) => c,
        Err(virtio::ConsoleError::NoDevice) => {
            serial_println!("omega: no host channel (no virtio console)");
            return;
        }
        Err(e) => fatal("host channel", e),
    };
    serial_println!(
        "omega: host channel: virtio console at mmio slot {}",
        console.slot
    );
    let mut ch =
        Channel::connect(console, HELLO_SPINS).unwrap_or_else(|e| fatal("host channel", e));
    serial_println!("omega: host channel up (protocol v{})", ch.version);

    let Some(seed) = m.log_key.as_deref().copied() else {
        fatal(
            "provenance log",
            "no entropy for the log key; refusing to run unlogged",
        )
    };
    let key = LogKey::from_seed(LOG_ORIGIN, seed)
        .unwrap_or_else(|| fatal("provenance log", "bad log key"));
    let vkey = key.verifier().encode();
    serial_println!("omega: provenance log key {vkey}");
    send_control(&mut ch, &ControlMsg::LogKey { vkey: &vkey });
    let mut prov = Provenance {
        log: Box::new(Log::new(0)),
        key,
        next_target: 0,
        sent: 0,
        acked: 0,
    };
    let start = Record {
        time: Provenance::now(m),
        agent: 0,
        action: Action::Lifecycle,
        target: 0,
        decision: Decision::Allow,
        rule: lifecycle::LOG_START,
        labels: 0,
        content: Some(m.info.kernel_sha256),
        name: Some(LOG_ORIGIN.as_bytes()),
    };
    prov.append(&mut ch, &start);
    prov.flush(&mut ch);

    let mut bundle = BundleReceiver::default();
    // Set once the bundle is in and logged: with no agent runtime yet there is nothing left
    // to do, so the monitor stops as soon as the host has stored the whole log.
    let mut finishing = false;
    loop {
        if finishing && prov.acked >= prov.sent {
            serial_println!(
                "omega: bundle delivered and logged ({} entries, {} bytes stored by the host); no agent runtime yet, shutting down",
                prov.log.size(),
                prov.acked
            );
            send_control(&mut ch, &ControlMsg::Shutdown { status: 0 });
            exit(ExitCode::Success);
        }
        let event = match ch.poll() {
            Ok(Some(e)) => e,
            Ok(None) => {
                core::hint::spin_loop();
                continue;
            }
            Err(e) => fatal("host channel", e),
        };
        match event {
            Event::Message(Stream::Control, body) => {
                match msg::decode_exact::<ControlMsg<'_>>(&body) {
                    Ok(ControlMsg::Shutdown { status }) => {
                        prov.checkpoint(&mut ch);
                        serial_println!(
                            "omega: host asked to shut down (status {status}); log has {} entries, {} bytes acknowledged as stored",
                            prov.log.size(),
                            prov.acked
                        );
                        send_control(&mut ch, &ControlMsg::Shutdown { status: 0 });
                        exit(ExitCode::Success);
                    }
                    Ok(ControlMsg::Notice { text }) => serial_println!("omega: host says: {text}"),
                    Ok(other) => serial_println!(
                        "omega: channel: unexpected control message from the host: {other:?}"
                    ),
                    Err(e) => serial_println!("omega: channel: bad control message: {e}"),
                }
            }
            Event::Message(Stream::Echo, mut body) if body.first() == Some(&msg::echo::REQUEST) => {
                body[0] = msg::echo::REPLY;
                ch.send(Stream::Echo, &body)
                    .unwrap_or_else(|e| fatal("host channel", e))
            }
            Event::Message(Stream::Bundle, body) if !echo_all_streams => match bundle
                .on_message(&body)
            {
                Ok(Progress::Started { files, total_bytes }) => {
                    serial_println!("omega: bundle: receiving {files} files, {total_bytes} bytes")
                }
                Ok(Progress::FileHeader) => {}
                Ok(Progress::File(i)) => {
                    let f = &bundle.files[i];
                    let d = f.sha256;
                    serial_println!(
                        "omega: bundle: {} ({} bytes) sha256 {:02x}{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}...",
                        f.name,
                        f.bytes.len(),
                        d[0],
                        d[1],
                        d[2],
                        d[3],
                        d[4],
                        d[5],
                        d[6],
                        d[7]
                    );
                    prov.next_target += 1;
                    let r = Record {
                        time: Provenance::now(m),
                        agent: 0,
                        action: Action::Lifecycle,
                        target: prov.next_target,
                        decision: Decision::Allow,
                        rule: lifecycle::DEFINE_TARGET,
                        labels: 0,
                        content: Some(f.sha256),
                        name: Some(f.name.as_bytes()),
                    };
                    prov.append(&mut ch, &r);
                }
                Ok(Progress::Finished) => {
                    serial_println!(
                        "omega: bundle: complete, {} files hashed and logged",
                        bundle.files.len()
                    );
                    prov.checkpoint(&mut ch);
                    finishing = true;
                }
                Err(e) => {
                    serial_println!("omega: bundle refused: {e}");
                    let _ = ch.send_error(Stream::Bundle, msg::code::PROTOCOL, "bundle refused");
                }
            },
            Event::Message(stream, body) if echo_all_streams && stream != Stream::Control => ch
                .send(stream, &body)
                .unwrap_or_else(|e| fatal("host channel", e)),
            Event::Message(stream, _) => {
                let _ = ch.send_error(
                    stream,
                    msg::code::UNAVAILABLE,
                    "stream not served by this monitor yet",
                );
            }
            Event::LogAck { stored } => prov.acked = prov.acked.max(stored),
            Event::PeerError {
                stream,
                code,
                message,
            } => {
                serial_println!(
                    "omega: host reports an error on {stream:?} (code {code}): {message}"
                )
            }
            Event::Malformed(e) => {
                if ch.malformed <= 20 || ch.malformed % 1000 == 0 {
                    serial_println!(
                        "omega: channel: malformed input from the host ({} so far): {e}",
                        ch.malformed
                    );
                }
            }
            Event::Closed(stream) => serial_println!("omega: host closed stream {stream:?}"),
        }
    }
}
