//! Guest-controlled bytes into the host's channel session (`omega_host::ChannelSession`:
//! the demux, Control handling, the log and echo relays): a script of frames with correct
//! CRCs and bad input (wire/fuzz/script.rs), usually after a valid Hello. Invariants: no
//! panic and no hang (the session ends when the input does, every thread joined); what
//! the guest makes the host store stays where it belongs (file names beside the log are
//! the fixed ones, evidence file names have no `/`, no leading `.`, no control
//! character, card file names are `<agent>.json` under the same rules; the log is never truncated beyond its length); everything the host writes
//! back decodes as well-formed frames.
#![no_main]

#[path = "../../../wire/fuzz/script.rs"]
mod script;

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use libfuzzer_sys::fuzz_target;
use omega_host::session::log_store::{CHECKPOINT_FILE, KEY_FILE, NONCE_FILE};
use omega_host::{Challenge, ChannelSession, LogStore, SessionConfig, SessionEvent};
use omega_wire::{Decoder, Encoder, Hello, Kind, msg};

/// A log store in memory that checks what it is asked to store.
struct Store {
    log: Vec<u8>,
}

impl LogStore for Store {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.log.extend_from_slice(bytes);
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn put_file(&mut self, name: &str, _bytes: &[u8]) -> io::Result<()> {
        assert!(
            [KEY_FILE, CHECKPOINT_FILE, NONCE_FILE].contains(&name),
            "stored {name:?}"
        );
        Ok(())
    }
    fn put_evidence(&mut self, file: &str, _bytes: &[u8]) -> io::Result<()> {
        assert!(
            !file.is_empty() && !file.starts_with('.'),
            "evidence file {file:?}"
        );
        assert!(
            !file.contains('/') && !file.chars().any(char::is_control),
            "evidence file {file:?}"
        );
        Ok(())
    }
    fn put_card(&mut self, file: &str, _bytes: &[u8]) -> io::Result<()> {
        let agent = file.strip_suffix(".json").unwrap_or("");
        assert!(
            !agent.is_empty() && !agent.starts_with('.'),
            "card file {file:?}"
        );
        assert!(
            !agent.contains('/') && !agent.chars().any(char::is_control),
            "card file {file:?}"
        );
        Ok(())
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        assert!(len <= self.log.len() as u64, "truncated beyond the log");
        self.log.truncate(len as usize);
        Ok(())
    }
}

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let [a, b, rest @ ..] = data else { return };
    let mut enc = Encoder::new();
    let mut input = Vec::new();
    if a & 1 == 0 {
        let hello = Hello {
            versions: &[1],
            window: 1 + u32::from(*b) * 4099,
        };
        let mut f = vec![0u8; 256];
        let n = enc.hello(&hello, &mut f).expect("hello");
        input.extend_from_slice(&f[..n]);
    }
    input.extend_from_slice(&script::build(rest, &mut enc).bytes);
    let out = Sink::default();
    let config = SessionConfig {
        log_store: Some(Box::new(Store { log: Vec::new() })),
        echo: a & 2 == 0,
        challenge: (a & 4 == 0).then_some(Challenge {
            nonce: [7; 32],
            simulated_psp: None,
        }),
        ..SessionConfig::default()
    };
    let events = ChannelSession::start(io::Cursor::new(input), out.clone(), config).join();
    assert_eq!(events.last(), Some(&SessionEvent::Ended));
    // The host's output, as the guest decodes it.
    let bytes = out.0.lock().unwrap().clone();
    let mut dec: Box<Decoder> = Box::new(Decoder::new());
    let mut rest = &bytes[..];
    while !rest.is_empty() || dec.pending() > 0 {
        let n = dec.push(rest);
        rest = &rest[n..];
        let mut any = false;
        while let Some(f) = dec.next_frame() {
            any = true;
            let f = f.expect("the host sends well-formed frames");
            if f.kind() == Kind::Error {
                msg::ErrorBody::decode(f.payload).expect("its Error bodies decode");
            }
        }
        assert!(n > 0 || any, "host output does not decode");
    }
});
