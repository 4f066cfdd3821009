//! Bundles at the contract's limits (`omega-bundle`), delivered into the real image: the
//! largest bundles the launcher accepts arrive complete, one byte more is refused by the
//! launcher before anything is sent (and by the monitor, cleanly, if a host sends it anyway).

use std::path::{Path, PathBuf};
use std::time::Duration;

use omega_bundle::{BundleMsg, MANIFEST, MAX_AGENTS, MAX_NAME, MAX_TOTAL_BYTES};
use omega_host::bundle::{Bundle, BundleError};
use omega_host::session::{ChannelSession, SessionEvent};
use omega_wire::Stream;
use omega_wire::msg::{self, ControlMsg};
use qemu_tests::{Boot, EXIT_SUCCESS, Outcome, Running, image};

fn module(size: usize, seed: u8) -> Vec<u8> {
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    m.extend((8..size).map(|i| (i as u8).wrapping_mul(151) ^ seed));
    m
}

/// Writes `dir/bundle`, whose modules share `total` bytes with the manifest and the policy.
fn write_bundle(dir: &Path, agents: &[(String, String)], total: u64) -> PathBuf {
    let dir = dir.join("bundle");
    std::fs::create_dir(&dir).unwrap();
    let manifest = omega_bundle::Manifest::json(
        "policy.bin",
        agents.iter().map(|(n, m)| (n.as_str(), m.as_str())),
    );
    let policy = b"OMPL policy bytes";
    let room = total - manifest.len() as u64 - policy.len() as u64;
    let each = room / agents.len() as u64;
    for (i, (_, m)) in agents.iter().enumerate() {
        // The first module takes what division leaves over.
        let size = if i == 0 {
            room - each * (agents.len() as u64 - 1)
        } else {
            each
        };
        std::fs::write(dir.join(m), module(size as usize, i as u8)).unwrap();
    }
    std::fs::write(dir.join(MANIFEST), &manifest).unwrap();
    std::fs::write(dir.join("policy.bin"), policy).unwrap();
    dir
}

fn production() -> Boot {
    Boot::new(image()).timeout(Duration::from_secs(300))
}

/// Boots the production image and serves it `bundle` with a log store.
fn deliver(dir: &Path, bundle: Bundle) -> (Outcome, Vec<SessionEvent>) {
    qemu_tests::deliver_bundle(production(), dir, bundle).unwrap()
}

/// Boots the production image and starts serving it `bundle` with a log store.
fn serve(dir: &Path, bundle: Bundle) -> (Running, ChannelSession) {
    qemu_tests::serve_bundle(production(), dir, bundle).unwrap()
}

/// Checks the bundle arrived whole and the monitor, holding all of it, had the heap margin
/// left that the arithmetic in `omega_bundle::limits` promises.
fn assert_received(out: &Outcome, files: usize) {
    assert_eq!(out.status, Some(EXIT_SUCCESS), "{out}");
    let line = format!("omega: bundle: complete, {files} files hashed and logged (");
    let at = out.serial.find(&line).unwrap_or_else(|| panic!("{out}"));
    let rest = &out.serial[at + line.len()..];
    let kib: usize = rest[..rest.find(' ').unwrap()].parse().unwrap();
    eprintln!("{files} files, {MAX_TOTAL_BYTES} bytes held: {kib} KiB of heap free");
    // The transient reassembly of one chunk needs at most 1.5 MiB of this.
    assert!(kib * 1024 >= 16 << 20, "{kib} KiB free\n{out}");
}

/// One module as large as the total allows (32 MiB less the manifest and the policy): the
/// size that crashed the monitor at 17 MiB before files came in bounded pieces.
#[test]
fn a_file_at_the_size_limit_is_received() {
    let dir = tempfile::tempdir().unwrap();
    let one = [("big".to_string(), "big.wasm".to_string())];
    let bundle_dir = write_bundle(dir.path(), &one, MAX_TOTAL_BYTES);
    let bundle = Bundle::read(&bundle_dir).unwrap();
    assert_eq!(bundle.total_bytes(), MAX_TOTAL_BYTES);
    let big = bundle.files[2].1.len();
    assert!(big as u64 > MAX_TOTAL_BYTES - 200, "{big}");
    let (out, _) = deliver(dir.path(), bundle);
    assert_received(&out, 3);
    assert!(
        out.serial
            .contains(&format!("omega: bundle: big.wasm ({big} bytes) sha256 ")),
        "{out}"
    );
}

/// Every limit at once: the most agents, each with its own module (the most files), the
/// longest names, and the largest total.
#[test]
fn most_files_with_the_longest_names_at_the_size_limit_are_received() {
    let dir = tempfile::tempdir().unwrap();
    let agents: Vec<(String, String)> = (0..MAX_AGENTS)
        .map(|i| {
            let name = format!("{i:0>width$}", width = MAX_NAME);
            let module = format!("{i:0>width$}.wasm", width = MAX_NAME - 5);
            (name, module)
        })
        .collect();
    let bundle_dir = write_bundle(dir.path(), &agents, MAX_TOTAL_BYTES);
    let bundle = Bundle::read(&bundle_dir).unwrap();
    assert_eq!(bundle.files.len(), MAX_AGENTS + 2);
    assert_eq!(bundle.total_bytes(), MAX_TOTAL_BYTES);
    let (out, _) = deliver(dir.path(), bundle);
    assert_received(&out, MAX_AGENTS + 2);
}

/// One byte over the total: the launcher refuses it before QEMU starts. A host that sends
/// it anyway (bypassing the launcher's check) is refused by the monitor at `Begin`, and the
/// monitor keeps serving.
#[test]
fn one_byte_over_is_refused_by_the_launcher_and_by_the_monitor() {
    let dir = tempfile::tempdir().unwrap();
    let one = [("big".to_string(), "big.wasm".to_string())];
    let bundle_dir = write_bundle(dir.path(), &one, MAX_TOTAL_BYTES + 1);
    match Bundle::read(&bundle_dir) {
        Err(BundleError::Contract(omega_bundle::BundleError::TooLarge(n))) => {
            assert!(n > MAX_TOTAL_BYTES)
        }
        other => panic!("the launcher must refuse it: {other:?}"),
    }

    // A hostile host: the same files, unchecked.
    let read = |n: &str| std::fs::read(bundle_dir.join(n)).unwrap();
    let manifest_bytes = read(MANIFEST);
    let files = vec![
        (MANIFEST.to_string(), manifest_bytes.clone()),
        ("policy.bin".to_string(), read("policy.bin")),
        ("big.wasm".to_string(), read("big.wasm")),
    ];
    let bundle = Bundle {
        manifest: omega_bundle::Manifest::parse(&manifest_bytes).unwrap(),
        files,
    };
    let (vm, session) = serve(dir.path(), bundle);
    let refused = session.wait_event(
        |e| {
            matches!(
                e,
                SessionEvent::GuestError {
                    stream: Stream::Bundle,
                    ..
                }
            )
        },
        Duration::from_secs(120),
    );
    assert!(refused.is_some(), "{:?}", session.events());
    // The monitor still serves: it shuts down when asked.
    assert!(
        session
            .wait_event(
                |e| matches!(e, SessionEvent::BundleSent { .. }),
                Duration::from_secs(120)
            )
            .is_some()
    );
    session
        .send_control(&ControlMsg::Shutdown { status: 0 })
        .unwrap();
    let out = vm.finish().unwrap();
    session.close();
    assert_eq!(out.status, Some(EXIT_SUCCESS), "{out}");
    assert!(
        out.serial.contains(&format!(
            "omega: bundle refused: {} bytes (limit {MAX_TOTAL_BYTES})",
            MAX_TOTAL_BYTES + 1
        )),
        "{out}"
    );
}

/// The old attack: a 17 MiB file as one message. The monitor's channel refuses the message
/// once it passes its reassembly limit, instead of running out of heap, and keeps serving.
#[test]
fn a_17_mib_message_is_refused_without_exhausting_the_heap() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("channel.sock");
    let (vm, mut host) = qemu_tests::boot_with_raw_host(production(), &sock, None).unwrap();
    let size = 17 << 20;
    let mut buf = [0u8; 128];
    let begin = BundleMsg::Begin {
        files: 1,
        total_bytes: size,
    };
    host.send(Stream::Bundle, msg::encode(&begin, &mut buf).unwrap())
        .unwrap();
    let file = BundleMsg::File {
        name: "big.wasm",
        size,
    };
    host.send(Stream::Bundle, msg::encode(&file, &mut buf).unwrap())
        .unwrap();
    host.send(Stream::Bundle, &module(size as usize, 1))
        .unwrap();
    let mut b = [0u8; 16];
    host.send(
        Stream::Control,
        msg::encode(&ControlMsg::Shutdown { status: 0 }, &mut b).unwrap(),
    )
    .unwrap();
    let out = vm.finish().unwrap();
    assert_eq!(out.status, Some(EXIT_SUCCESS), "{out}");
    assert!(out.serial.contains("message too large"), "{out}");
}
