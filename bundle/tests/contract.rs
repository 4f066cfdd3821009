//! The bundle contract at its limits: everything `validate` (the launcher's check) accepts,
//! the monitor's receiver accepts too, and what it refuses the receiver refuses.

use omega_bundle::msg::{self, Message};
use omega_bundle::*;

type Files = Vec<(String, Vec<u8>)>;

fn module(size: usize) -> Vec<u8> {
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    m.resize(size.max(8), 0x5a);
    m
}

fn manifest(agents: &[(String, String)]) -> Vec<u8> {
    Manifest::json(
        "policy.bin",
        agents.iter().map(|(n, m)| (n.as_str(), m.as_str())),
    )
}

/// A bundle of `agents` agents, each with its own module of `module_size` bytes.
fn bundle(agents: usize, module_size: usize) -> Files {
    let agents: Vec<(String, String)> = (0..agents)
        .map(|i| (format!("agent-{i}"), format!("m{i}.wasm")))
        .collect();
    let mut files = vec![
        (MANIFEST.to_string(), manifest(&agents)),
        ("policy.bin".to_string(), b"OMPL".to_vec()),
    ];
    for (_, m) in &agents {
        files.push((m.clone(), module(module_size)));
    }
    files
}

fn total(files: &Files) -> u64 {
    files.iter().map(|(_, b)| b.len() as u64).sum()
}

/// Sends `files` through the message sequence into a receiver, as the monitor would get it.
fn receive(files: &Files) -> Result<BundleReceiver, BundleError> {
    let mut r = BundleReceiver::default();
    let mut buf = [0u8; msg::MAX_HEADER_MESSAGE];
    let mut last = None;
    for m in msg::sequence(files) {
        let body: &[u8] = match m {
            Message::Header(h) => omega_wire::msg::encode(&h, &mut buf).unwrap(),
            Message::Content(c) => {
                assert!(!c.is_empty() && c.len() <= MAX_CHUNK);
                c
            }
        };
        last = Some(r.on_message(body)?);
    }
    assert_eq!(last, Some(Progress::Finished));
    assert!(r.is_done());
    Ok(r)
}

/// The launcher's verdict and the monitor's agree.
fn both(files: &Files) -> Result<(), BundleError> {
    let host = validate(files).map(|_| ());
    let guest = receive(files).map(|_| ());
    assert_eq!(
        host.is_ok(),
        guest.is_ok(),
        "host {host:?}, guest {guest:?}"
    );
    host
}

#[test]
fn receives_and_hashes_in_chunks() {
    // The module spans three content messages.
    let files = bundle(2, 2 * MAX_CHUNK + 5);
    let r = receive(&files).unwrap();
    assert_eq!(r.files.len(), 4);
    for (f, (name, bytes)) in r.files.iter().zip(&files) {
        assert_eq!(&f.name, name);
        assert_eq!(&f.bytes, bytes);
        assert_eq!(f.bytes.capacity(), bytes.len(), "reserved exactly");
    }
    let m = r.manifest.unwrap();
    assert_eq!(m.agents.len(), 2);
    assert_eq!(
        m.files(),
        ["manifest.json", "policy.bin", "m0.wasm", "m1.wasm"]
    );
    assert_eq!(
        r.files[1].sha256,
        <[u8; 32]>::from(<sha2::Sha256 as sha2::Digest>::digest(b"OMPL"))
    );
}

#[test]
fn most_agents_and_files_accepted_one_more_refused() {
    let files = bundle(MAX_AGENTS, 8);
    // The rest of MAX_FILES is for data files.
    assert_eq!(
        files.len() as u32,
        MAX_FILES - omega_bundle::MAX_DATA as u32
    );
    both(&files).unwrap();
    assert!(matches!(
        both(&bundle(MAX_AGENTS + 1, 8)),
        Err(BundleError::Manifest(
            omega_bundle::ManifestError::AgentCount(_)
        ))
    ));
}

#[test]
fn largest_total_accepted_one_byte_more_refused() {
    // One module takes everything the manifest and the policy leave.
    let mut files = bundle(1, 8);
    let rest = MAX_TOTAL_BYTES - total(&files) + 8;
    files[2].1 = module(rest as usize);
    assert_eq!(total(&files), MAX_TOTAL_BYTES);
    both(&files).unwrap();
    files[2].1.push(0);
    assert_eq!(
        both(&files),
        Err(BundleError::TooLarge(MAX_TOTAL_BYTES + 1))
    );
}

#[test]
fn longest_names_accepted_one_more_refused() {
    let name = |n: usize| "a".repeat(n);
    let long_module = format!("{}.wasm", name(MAX_NAME - 5));
    let agents = vec![(name(MAX_NAME), long_module.clone())];
    let files: Files = vec![
        (MANIFEST.into(), manifest(&agents)),
        ("policy.bin".into(), b"OMPL".to_vec()),
        (long_module, module(8)),
    ];
    both(&files).unwrap();

    let too_long_agent = vec![(name(MAX_NAME + 1), "m.wasm".to_string())];
    let files: Files = vec![
        (MANIFEST.into(), manifest(&too_long_agent)),
        ("policy.bin".into(), b"OMPL".to_vec()),
        ("m.wasm".into(), module(8)),
    ];
    assert!(matches!(
        both(&files),
        Err(BundleError::Manifest(ManifestError::BadAgentName(_)))
    ));

    let too_long_module = format!("{}.wasm", name(MAX_NAME - 4));
    let agents = vec![("a".to_string(), too_long_module.clone())];
    let files: Files = vec![
        (MANIFEST.into(), manifest(&agents)),
        ("policy.bin".into(), b"OMPL".to_vec()),
        (too_long_module, module(8)),
    ];
    assert!(matches!(both(&files), Err(BundleError::BadName(_))));
}

#[test]
fn manifest_rules_hold_on_both_sides() {
    let with = |f: &dyn Fn(&mut Files)| {
        let mut files = bundle(2, 8);
        f(&mut files);
        both(&files)
    };
    // An empty file has a header and no content message.
    with(&|f| f[1].1.clear()).unwrap();
    // Hidden files, paths, wrong order, missing or extra files, not Wasm, bad JSON.
    assert!(matches!(
        with(&|f| f[1].0 = ".policy".into()),
        Err(BundleError::BadName(_))
    ));
    assert!(matches!(
        with(&|f| f[1].0 = "../policy.bin".into()),
        Err(BundleError::BadName(_))
    ));
    assert!(matches!(
        with(&|f| f.swap(2, 3)),
        Err(BundleError::WrongFile { position: 2, .. })
    ));
    assert!(matches!(
        with(&|f| {
            f.pop();
        }),
        Err(BundleError::WrongFile { position: 3, .. })
    ));
    assert!(matches!(
        with(&|f| f.push(("extra.bin".into(), vec![1]))),
        Err(BundleError::WrongFile { position: 4, .. })
    ));
    assert!(matches!(
        with(&|f| f[3].1 = b"not wasm".to_vec()),
        Err(BundleError::NotWasm(_))
    ));
    assert!(matches!(
        with(&|f| f[0].1 = b"{".to_vec()),
        Err(BundleError::Manifest(ManifestError::Json(_)))
    ));
    assert!(matches!(
        with(&|f| f[0].1 = br#"{"version":2,"policy":"p","agents":[]}"#.to_vec()),
        Err(BundleError::Manifest(ManifestError::Version(2)))
    ));
    assert!(matches!(
        with(&|f| f[0].1 = br#"{"version":1,"policy":"p","agents":[],"x":1}"#.to_vec()),
        Err(BundleError::Manifest(ManifestError::Json(_)))
    ));
    assert!(matches!(
        with(&|f| f[0].1 = br#"{"version":1,"policy":"policy.bin","agents":[]}"#.to_vec()),
        Err(BundleError::Manifest(ManifestError::AgentCount(0)))
    ));
    assert!(matches!(
        with(&|f| f.insert(0, ("a".into(), vec![]))),
        Err(BundleError::WrongFile { position: 0, .. })
    ));
}

#[test]
fn agents_may_share_a_module_sent_once() {
    let agents = vec![
        ("a".to_string(), "m.wasm".to_string()),
        ("b".to_string(), "m.wasm".to_string()),
    ];
    let files: Files = vec![
        (MANIFEST.into(), manifest(&agents)),
        ("policy.bin".into(), b"OMPL".to_vec()),
        ("m.wasm".into(), module(8)),
    ];
    both(&files).unwrap();
    let policy_as_module = vec![("a".to_string(), "policy.wasm".to_string())];
    let m = String::from_utf8(manifest(&policy_as_module))
        .unwrap()
        .replace("policy.bin", "policy.wasm");
    assert_eq!(
        Manifest::parse(m.as_bytes()),
        Err(ManifestError::BadModuleName("policy.wasm".into()))
    );
}

fn enc(m: &BundleMsg<'_>) -> Vec<u8> {
    let mut buf = [0u8; 4096];
    omega_wire::msg::encode(m, &mut buf).unwrap().to_vec()
}

#[test]
fn the_receiver_refuses_what_breaks_the_sequence() {
    let begin = |files, total_bytes| enc(&BundleMsg::Begin { files, total_bytes });
    let file = |name, size| enc(&BundleMsg::File { name, size });
    let mut r = BundleReceiver::default();
    assert_eq!(
        r.on_message(&begin(MAX_FILES + 1, 0)),
        Err(BundleError::TooManyFiles(MAX_FILES + 1))
    );
    assert_eq!(
        r.on_message(&begin(1, MAX_TOTAL_BYTES + 1)),
        Err(BundleError::TooLarge(MAX_TOTAL_BYTES + 1))
    );
    assert_eq!(r.on_message(b"\xff\xff"), Err(BundleError::BadMessage));
    for bad in ["../etc", "", ".hidden", "a/b", "x y"] {
        r.on_message(&begin(1, 4)).unwrap();
        assert_eq!(
            r.on_message(&file(bad, 1)),
            Err(BundleError::BadName(bad.into())),
            "{bad:?}"
        );
    }
    // A hostile name is cut short in the error.
    r.on_message(&begin(1, 4)).unwrap();
    let long = "/".repeat(1000);
    assert_eq!(
        r.on_message(&file(&long, 1)),
        Err(BundleError::BadName("/".repeat(MAX_NAME + 1)))
    );
    // Content must come in chunks of exactly MAX_CHUNK (the last one shorter).
    r.on_message(&begin(1, 4)).unwrap();
    r.on_message(&file("a", 4)).unwrap();
    assert_eq!(
        r.on_message(b"abc"),
        Err(BundleError::ChunkSize {
            expected: 4,
            got: 3
        })
    );
    r.on_message(&begin(1, MAX_CHUNK as u64 + 1)).unwrap();
    r.on_message(&file("a", MAX_CHUNK as u64 + 1)).unwrap();
    assert_eq!(
        r.on_message(&[0; 10]),
        Err(BundleError::ChunkSize {
            expected: MAX_CHUNK as u64,
            got: 10
        })
    );
    r.on_message(&begin(1, 4)).unwrap();
    assert_eq!(r.on_message(&file("a", 5)), Err(BundleError::TooLarge(5)));
    r.on_message(&begin(2, 2)).unwrap();
    r.on_message(&file("a", 1)).unwrap();
    r.on_message(b"x").unwrap();
    assert_eq!(
        r.on_message(&file("a", 1)),
        Err(BundleError::DuplicateName("a".into()))
    );
    r.on_message(&begin(2, 1)).unwrap();
    r.on_message(&file("a", 1)).unwrap();
    r.on_message(b"x").unwrap();
    assert_eq!(
        r.on_message(&enc(&BundleMsg::End)),
        Err(BundleError::CountMismatch {
            declared: 2,
            got: 1
        })
    );
    assert_eq!(
        r.on_message(&enc(&BundleMsg::End)),
        Err(BundleError::UnexpectedMessage("expected Begin"))
    );
    // Every header fits the documented bound.
    assert!(
        enc(&BundleMsg::File {
            name: &"a".repeat(MAX_NAME),
            size: u64::MAX
        })
        .len()
            <= msg::MAX_HEADER_MESSAGE
    );
}

#[test]
fn messages_round_trip_and_refuse_trailing_bytes() {
    for m in [
        BundleMsg::Begin {
            files: 3,
            total_bytes: 99,
        },
        BundleMsg::File {
            name: "agent.wasm",
            size: 1 << 33,
        },
        BundleMsg::End,
    ] {
        let e = enc(&m);
        assert_eq!(omega_wire::msg::decode_exact::<BundleMsg>(&e).unwrap(), m);
        let mut longer = e.clone();
        longer.push(0);
        assert!(omega_wire::msg::decode_exact::<BundleMsg>(&longer).is_err());
    }
}

/// Attack: a host delivers a second bundle after the first completed, to replace the policy
/// and modules in force. Refused (a `Begin` as `AlreadyDelivered`, anything else as
/// unexpected), however many times, and the first bundle stays as it was.
#[test]
fn a_second_bundle_after_a_complete_one_is_refused() {
    let first = bundle(1, 100);
    let mut r = receive(&first).unwrap();
    let before: Vec<[u8; 32]> = r.files.iter().map(|f| f.sha256).collect();
    let mut other = bundle(2, 50);
    other[1].1 = b"OMPL another policy".to_vec();
    for _ in 0..2 {
        let mut buf = [0u8; msg::MAX_HEADER_MESSAGE];
        let mut results = Vec::new();
        for m in msg::sequence(&other) {
            let body: &[u8] = match m {
                Message::Header(h) => omega_wire::msg::encode(&h, &mut buf).unwrap(),
                Message::Content(c) => c,
            };
            results.push(r.on_message(body));
        }
        assert_eq!(results[0], Err(BundleError::AlreadyDelivered));
        assert!(
            results[1..].iter().all(|r| *r
                == Err(BundleError::UnexpectedMessage(
                    "the bundle was already delivered"
                ))),
            "{results:?}"
        );
        assert!(r.is_done());
        let after: Vec<[u8; 32]> = r.files.iter().map(|f| f.sha256).collect();
        assert_eq!(before, after);
        assert_eq!(r.manifest.as_ref().unwrap().agents.len(), 1);
    }
}

/// Manifests without the per-agent fields stay valid and get the safe defaults; each field
/// is checked against its limits; data files come after the modules and are not Wasm.
#[test]
fn agent_limits_default_are_checked_and_data_files_follow_the_modules() {
    let old = br#"{"version":1,"policy":"p.bin","agents":[{"name":"a","module":"a.wasm"}]}"#;
    let m = Manifest::parse(old).unwrap();
    assert_eq!(m.agents[0], AgentEntry::new("a", "a.wasm"));
    assert_eq!(m.agents[0].memory, 4 << 20);
    assert_eq!(m.agents[0].restart, Restart::Never);
    assert_eq!(m.agents[0].fuel_budget, None);
    // Defaults are not written out: the JSON of an old manifest is unchanged.
    assert_eq!(Manifest::parse(&m.to_json()).unwrap(), m);
    assert!(!String::from_utf8(m.to_json()).unwrap().contains("memory"));

    let full = br#"{"version":1,"policy":"p.bin","agents":[{"name":"a","module":"a.wasm",
        "publisher":"Example Corp","memory":1048576,"fuel_slice":5000,"fuel_budget":9,
        "restart":{"on":"trap","max":3}}],
        "data":[{"source":"ehr","path":"/patients/p1.txt","file":"p1.txt"}]}"#;
    let m = Manifest::parse(full).unwrap();
    assert_eq!(m.agents[0].restart, Restart::Trap { max: 3 });
    assert_eq!(m.files(), ["manifest.json", "p.bin", "a.wasm", "p1.txt"]);
    let files = vec![
        (MANIFEST.to_string(), full.to_vec()),
        ("p.bin".to_string(), b"OMPL".to_vec()),
        ("a.wasm".to_string(), module(8)),
        ("p1.txt".to_string(), b"not wasm".to_vec()),
    ];
    validate(&files).unwrap();

    let refused = |field: &str| {
        let j = format!(
            r#"{{"version":1,"policy":"p.bin","agents":[{{"name":"a","module":"a.wasm",{field}}}]}}"#
        );
        Manifest::parse(j.as_bytes()).unwrap_err()
    };
    for bad in [
        r#""memory":0"#,
        r#""memory":1000"#,
        r#""memory":34603008"#,
        r#""fuel_slice":999"#,
        r#""fuel_slice":10000001"#,
        r#""fuel_budget":0"#,
        r#""restart":{"on":"trap","max":101}"#,
        r#""publisher":"\u001b[2J""#,
    ] {
        assert!(
            matches!(refused(bad), ManifestError::BadLimit { .. }),
            "{bad}"
        );
    }
    assert!(matches!(
        refused(r#""memroy":65536"#),
        ManifestError::Json(_)
    ));

    let data = |d: &str| {
        let j = format!(
            r#"{{"version":1,"policy":"p.bin","agents":[{{"name":"a","module":"a.wasm"}}],"data":[{d}]}}"#
        );
        Manifest::parse(j.as_bytes())
    };
    assert!(data(r#"{"source":"s","path":"x","file":"x.txt"}"#).is_ok());
    for bad in [
        r#"{"source":"s","path":"/a/../b","file":"x.txt"}"#,
        r#"{"source":"s","path":"a//b","file":"x.txt"}"#,
        r#"{"source":"s","path":"x","file":"a.wasm"}"#,
        r#"{"source":"s","path":"x","file":"p.bin"}"#,
        r#"{"source":"s","path":"x","file":"x.txt"},{"source":"s","path":"x","file":"y.txt"}"#,
        r#"{"source":"s","path":"x","file":"x.txt"},{"source":"t","path":"x","file":"x.txt"}"#,
    ] {
        assert!(data(bad).is_err(), "{bad}");
    }
}

/// An agent's A2A card declarations (description, version, skills) are optional; a manifest
/// without them is unchanged, and what breaks the card contract's limits is refused.
#[test]
fn card_declarations_are_optional_and_checked_against_the_card_contract() {
    let old = br#"{"version":1,"policy":"p.bin","agents":[{"name":"a","module":"a.wasm"}]}"#;
    let m = Manifest::parse(old).unwrap();
    assert!(m.agents[0].skills.is_empty() && m.agents[0].description.is_none());
    assert!(!String::from_utf8(m.to_json()).unwrap().contains("skills"));

    let with = |fields: &str| {
        let j = format!(
            r#"{{"version":1,"policy":"p.bin","agents":[{{"name":"a","module":"a.wasm",{fields}}}]}}"#
        );
        Manifest::parse(j.as_bytes())
    };
    let m = with(
        r#""description":"Sorts records","version":"1.0.0","skills":[
        {"id":"triage","name":"Triage","description":"Ranks records","tags":["health"]},
        {"id":"handoff","name":"Hand off","description":"Sends a summary"}]"#,
    )
    .unwrap();
    let a = &m.agents[0];
    assert_eq!(a.description.as_deref(), Some("Sorts records"));
    assert_eq!(a.skills.len(), 2);
    assert_eq!(a.skills[0].tags, ["health"]);
    assert!(a.skills[1].tags.is_empty());
    assert_eq!(Manifest::parse(&m.to_json()).unwrap(), m);

    let skill = |i: usize| format!(r#"{{"id":"s{i}","name":"n","description":"d"}}"#);
    let sixteen: Vec<String> = (0..16).map(skill).collect();
    assert!(with(&format!(r#""skills":[{}]"#, sixteen.join(","))).is_ok());
    let seventeen: Vec<String> = (0..17).map(skill).collect();
    for bad in [
        format!(r#""skills":[{}]"#, seventeen.join(",")),
        r#""skills":[{"id":"x","name":"n","description":"d"},{"id":"x","name":"m","description":"e"}]"#.into(),
        r#""skills":[{"id":"a b","name":"n","description":"d"}]"#.into(),
        r#""skills":[{"id":"x","name":"","description":"d"}]"#.into(),
        r#""skills":[{"id":"x","name":"n","description":"line\nbreak"}]"#.into(),
        r#""skills":[{"id":"x","name":"n","description":"d","tags":["1","2","3","4","5","6","7","8","9"]}]"#.into(),
    ] {
        assert!(
            matches!(with(&bad), Err(ManifestError::BadSkills { .. })),
            "{bad}"
        );
    }
    assert!(matches!(
        with(r#""skills":[{"id":"x","name":"n","description":"d","examples":[]}]"#),
        Err(ManifestError::Json(_))
    ));
    for bad in [
        r#""description":"""#.to_string(),
        format!(r#""description":"{}""#, "d".repeat(513)),
        r#""version":"1\u0000""#.into(),
    ] {
        assert!(
            matches!(with(&bad), Err(ManifestError::BadLimit { .. })),
            "{bad}"
        );
    }
}

/// `instances = N` runs N agents `NAME-0`..`NAME-(N-1)` of one entry; the count is bounded
/// per entry and in all, and no running name may clash with another.
#[test]
fn instances_expand_to_unique_bounded_names() {
    let parse = |agents: &str| {
        Manifest::parse(
            format!(r#"{{"version":1,"policy":"p.bin","agents":[{agents}]}}"#).as_bytes(),
        )
    };
    let m = parse(r#"{"name":"w","module":"w.wasm","instances":3},{"name":"d","module":"d.wasm"}"#)
        .unwrap();
    let names: Vec<String> = m.running().map(|(n, _)| n).collect();
    assert_eq!(names, ["w-0", "w-1", "w-2", "d"]);
    assert_eq!(Manifest::parse(&m.to_json()).unwrap(), m);
    // Without `instances` the JSON is unchanged.
    assert!(
        !String::from_utf8(m.to_json())
            .unwrap()
            .contains("\"instances\":1")
    );

    let most = format!(r#"{{"name":"w","module":"w.wasm","instances":{MAX_INSTANCES}}}"#);
    assert_eq!(parse(&most).unwrap().running().count(), MAX_INSTANCES);
    for (agents, err) in [
        (
            format!(
                r#"{{"name":"w","module":"w.wasm","instances":{}}}"#,
                MAX_INSTANCES + 1
            ),
            "instances: 1..=8192",
        ),
        (
            r#"{"name":"w","module":"w.wasm","instances":0}"#.into(),
            "instances: 1..=8192",
        ),
        (
            format!(
                r#"{{"name":"{}","module":"w.wasm","instances":10}}"#,
                "x".repeat(63)
            ),
            "fit in 64 bytes",
        ),
        (
            format!(
                r#"{{"name":"a","module":"w.wasm","instances":{MAX_INSTANCES}}},{{"name":"b","module":"w.wasm"}}"#
            ),
            "at most 8192",
        ),
        (
            r#"{"name":"w","module":"w.wasm","instances":2},{"name":"w-1","module":"w.wasm"}"#
                .into(),
            "duplicate agent \"w-1\"",
        ),
    ] {
        let e = parse(&agents).unwrap_err().to_string();
        assert!(e.contains(err), "{agents}: {e}");
    }
}

/// The tools file (each tool server's identity) is one more bundle file, sent last, so the
/// manifest digest covers its name and the monitor hashes and logs its contents; it cannot
/// double as the policy, a module or a data file.
#[test]
fn the_tools_file_is_sent_last_and_is_no_other_file() {
    let m = Manifest::parse(
        br#"{"version":1,"policy":"p.bin","agents":[{"name":"a","module":"a.wasm"}],"tools":"tools.json"}"#,
    )
    .unwrap();
    assert_eq!(m.tools.as_deref(), Some("tools.json"));
    assert_eq!(
        m.files(),
        ["manifest.json", "p.bin", "a.wasm", "tools.json"]
    );
    assert_eq!(Manifest::parse(&m.to_json()).unwrap(), m);
    // A bundle with it validates (it is JSON, not Wasm); without it, it does not.
    let manifest = m.to_json();
    let files = vec![
        (MANIFEST.to_string(), manifest.clone()),
        ("p.bin".to_string(), b"OMPL".to_vec()),
        ("a.wasm".to_string(), module(8)),
        ("tools.json".to_string(), br#"{"servers":[]}"#.to_vec()),
    ];
    validate(&files).unwrap();
    assert!(validate(&files[..3]).is_err());
    for bad in ["p.bin", "a.wasm", "manifest.json", "../t.json", ""] {
        let json = format!(
            r#"{{"version":1,"policy":"p.bin","agents":[{{"name":"a","module":"a.wasm"}}],"tools":"{bad}"}}"#
        );
        assert!(Manifest::parse(json.as_bytes()).is_err(), "{bad}");
    }
}

#[test]
fn a_fleet_entry_is_checked_on_both_sides() {
    let key = "0a".repeat(32);
    let cases = [
        ("lab", key.clone(), true),
        ("", key.clone(), false),
        ("la b", key.clone(), false),
        (&*"f".repeat(65), key.clone(), false),
        ("lab", "0A".repeat(32), false),
        ("lab", "0a".repeat(31), false),
        ("lab", format!("{}0g", "0a".repeat(31)), false),
    ];
    for (id, coordinator, ok) in cases {
        let mut files = bundle(1, 8);
        let mut m = Manifest::parse(&files[0].1).unwrap();
        m.fleet = Some(FleetEntry {
            id: id.into(),
            coordinator: coordinator.clone(),
            owner: None,
        });
        files[0].1 = m.to_json();
        let r = both(&files);
        assert_eq!(r.is_ok(), ok, "{id:?} {coordinator}: {r:?}");
        if !ok {
            assert_eq!(r, Err(BundleError::Manifest(ManifestError::BadFleet)));
        }
    }
    let entry = FleetEntry {
        id: "lab".into(),
        coordinator: key,
        owner: None,
    };
    assert_eq!(entry.coordinator_key(), Some([0x0a; 32]));
}

/// `fleet` names exactly one root: a coordinator key or the owner's.
#[test]
fn a_fleet_entry_names_one_root() {
    let key = "0a".repeat(32);
    let cases = [
        (String::new(), Some(key.clone()), true),
        (key.clone(), Some(key.clone()), false),
        (String::new(), None, false),
        (String::new(), Some("0A".repeat(32)), false),
        (String::new(), Some(String::new()), false),
    ];
    for (coordinator, owner, ok) in cases {
        let mut files = bundle(1, 8);
        let mut m = Manifest::parse(&files[0].1).unwrap();
        m.fleet = Some(FleetEntry {
            id: "lab".into(),
            coordinator: coordinator.clone(),
            owner: owner.clone(),
        });
        files[0].1 = m.to_json();
        let r = both(&files);
        assert_eq!(r.is_ok(), ok, "{coordinator:?} {owner:?}: {r:?}");
        if ok {
            let f = Manifest::parse(&files[0].1).unwrap().fleet.unwrap();
            assert_eq!(
                (f.owner_key(), f.coordinator_key()),
                (Some([0x0a; 32]), None)
            );
        }
    }
}

#[test]
fn a_coordinator_entry_is_checked_on_both_sides() {
    for (owner, ok) in [
        ("0b".repeat(32), true),
        ("0B".repeat(32), false),
        ("0b".repeat(31), false),
        (String::new(), false),
    ] {
        let mut files = bundle(1, 8);
        let mut m = Manifest::parse(&files[0].1).unwrap();
        m.coordinator = Some(CoordinatorEntry {
            owner: owner.clone(),
            min_policy_version: 3,
        });
        files[0].1 = m.to_json();
        let r = both(&files);
        assert_eq!(r.is_ok(), ok, "{owner}: {r:?}");
        if ok {
            let parsed = Manifest::parse(&files[0].1).unwrap();
            let c = parsed.coordinator.unwrap();
            assert_eq!((c.owner_key(), c.min_policy_version), (Some([0x0b; 32]), 3));
        } else {
            assert_eq!(r, Err(BundleError::Manifest(ManifestError::BadCoordinator)));
        }
    }
    // The floor defaults to 0; unknown fields are refused.
    let base =
        r#"{"version":1,"policy":"p.bin","agents":[{"name":"a","module":"a.wasm"}],"coordinator":"#;
    let owner = "0c".repeat(32);
    let m = Manifest::parse(format!(r#"{base}{{"owner":"{owner}"}}}}"#).as_bytes()).unwrap();
    assert_eq!(m.coordinator.unwrap().min_policy_version, 0);
    assert!(Manifest::parse(format!(r#"{base}{{"owner":"{owner}","x":1}}}}"#).as_bytes()).is_err());
}
