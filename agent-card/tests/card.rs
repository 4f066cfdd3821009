//! The card contract end to end: build and sign, decode and verify, and every forgery the
//! verifier must refuse. An independent canonicalisation (serde_json, sorted keys, compact)
//! checks the JWS signing input.

use omega_agent_card::{CardBody, CardError, CardKey, SignedCard, Skill, b64, hex};
use omega_test_support::random::{Rng, mutate, seed};

fn body() -> CardBody {
    CardBody {
        agent: "triage".into(),
        description: "Sorts incoming records by urgency".into(),
        version: "1.2.0".into(),
        publisher: "Acme Health".into(),
        skills: vec![
            Skill {
                id: "triage".into(),
                name: "Triage records".into(),
                description: "Reads labelled records and ranks them, \"urgent\" first".into(),
                tags: vec!["health".into(), "ranking".into()],
            },
            Skill {
                id: "summarise".into(),
                name: "Hand off".into(),
                description: "Sends a summary to the summariser agent".into(),
                tags: vec![],
            },
        ],
        module_hash: [0xAB; 32],
        boot_id: [0xB0; 16],
        instance_of: None,
    }
}

fn key(n: u8) -> CardKey {
    CardKey::from_seed([n; 32]).unwrap()
}

fn card_json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

#[test]
fn a_signed_card_decodes_and_verifies_with_its_key_only() {
    let k = key(1);
    let card = k.sign(&body()).unwrap();
    let c = SignedCard::decode(card.as_bytes()).unwrap();
    assert_eq!(c.body, body());
    assert_eq!(c.card_key, k.public());
    c.verify(&k.public()).unwrap();
    assert!(matches!(
        c.verify(&key(2).public()),
        Err(CardError::KeyMismatch { .. })
    ));
    // Deterministic: the same body and key give the same bytes.
    assert_eq!(k.sign(&body()).unwrap(), card);
    assert!(matches!(
        CardKey::from_seed([0; 32]),
        Err(CardError::ZeroSeed)
    ));
}

#[test]
fn the_card_is_an_a2a_v1_agent_card_with_the_omega_extension() {
    let k = key(1);
    let v = card_json(&k.sign(&body()).unwrap());
    for f in [
        "name",
        "description",
        "supportedInterfaces",
        "version",
        "capabilities",
        "defaultInputModes",
        "defaultOutputModes",
        "skills",
        "signatures",
    ] {
        assert!(v.get(f).is_some(), "{f} missing");
    }
    assert_eq!(v["name"], "triage");
    assert_eq!(v["supportedInterfaces"][0]["protocolVersion"], "1.0");
    assert_eq!(v["skills"][0]["tags"][1], "ranking");
    // Empty lists and proto3 defaults are left out, as proto JSON (and the A2A SDK) does.
    assert!(v["skills"][1].get("tags").is_none());
    let ext = &v["capabilities"]["extensions"][0];
    assert_eq!(ext["uri"], omega_agent_card::EXTENSION_URI);
    assert!(ext.get("required").is_none());
    assert_eq!(ext["params"]["moduleSha256"], hex(&[0xAB; 32]));
    assert_eq!(ext["params"]["bootId"], hex(&[0xB0; 16]));
    assert_eq!(ext["params"]["cardKey"], hex(&k.public()));
    assert_eq!(ext["params"]["cardKeyPrincipal"], "card");
    assert_eq!(ext["params"]["modulePrincipal"], "agent:triage");
    let sig = &v["signatures"][0];
    let header: serde_json::Value =
        serde_json::from_slice(&b64::decode(sig["protected"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(
        header["kid"],
        format!("omega-card-key:{}", hex(&k.public()))
    );
}

#[test]
fn signing_input_agrees_with_an_independent_canonicalisation() {
    // Members re-inserted sorted by bytes (= UTF-16 order for these ASCII keys; sorted
    // explicitly because a dependency may turn on serde_json's `preserve_order`), compact
    // output escaping as JCS does for this content: JCS of the card minus signatures.
    fn sorted(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                serde_json::Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&m[k])))
                        .collect(),
                )
            }
            serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    let k = key(3);
    let card = k.sign(&body()).unwrap();
    let mut v = card_json(&card);
    let sig = v.as_object_mut().unwrap().remove("signatures").unwrap();
    let canonical = serde_json::to_string(&sorted(&v)).unwrap();
    let protected = sig[0]["protected"].as_str().unwrap();
    let input = format!("{protected}.{}", b64::encode(canonical.as_bytes()));
    let c = SignedCard::decode(card.as_bytes()).unwrap();
    assert_eq!(c.signing_input(), input.as_bytes());
    let s = b64::decode(sig[0]["signature"].as_str().unwrap()).unwrap();
    ed25519_verify(&k.public(), input.as_bytes(), &s);
    // The card as served (any member order, whitespace) verifies the same way.
    let pretty = serde_json::to_string_pretty(&card_json(&card)).unwrap();
    SignedCard::decode(pretty.as_bytes())
        .unwrap()
        .verify(&k.public())
        .unwrap();
}

fn ed25519_verify(public: &[u8; 32], msg: &[u8], sig: &[u8]) {
    // The primitive called directly on the independently built input.
    let pk = ed25519_compact::PublicKey::new(*public);
    let sig = ed25519_compact::Signature::from_slice(sig).unwrap();
    pk.verify(msg, &sig).unwrap();
}

/// Re-serialises `v` compactly (any order: the decoder canonicalises).
fn text(v: &serde_json::Value) -> String {
    serde_json::to_string(v).unwrap()
}

#[test]
fn forgeries_are_refused() {
    let k = key(1);
    let genuine = card_json(&k.sign(&body()).unwrap());
    let attested = k.public();
    let check = |v: &serde_json::Value| -> Result<(), CardError> {
        SignedCard::decode(text(v).as_bytes())?.verify(&attested)
    };
    check(&genuine).unwrap();

    // Signed by another key (names it honestly): refused, the keys named.
    let other = card_json(&key(2).sign(&body()).unwrap());
    assert!(matches!(check(&other), Err(CardError::KeyMismatch { .. })));

    // Signed by another key but claiming the attested one: the signature fails.
    let mut v = other.clone();
    v["capabilities"]["extensions"][0]["params"]["cardKey"] = hex(&attested).into();
    let hdr = format!(
        "{{\"alg\":\"EdDSA\",\"kid\":\"omega-card-key:{}\"}}",
        hex(&attested)
    );
    v["signatures"][0]["protected"] = b64::encode(hdr.as_bytes()).into();
    assert_eq!(check(&v), Err(CardError::BadSignature));

    // Swapped module hash, another boot, edited skills, edited description: signature fails.
    let mut b = body();
    b.module_hash = [0xCD; 32];
    let swapped = card_json(&key(9).sign(&b).unwrap());
    let mut v = genuine.clone();
    v["capabilities"]["extensions"][0]["params"]["moduleSha256"] =
        swapped["capabilities"]["extensions"][0]["params"]["moduleSha256"].clone();
    assert_eq!(check(&v), Err(CardError::BadSignature));
    let mut v = genuine.clone();
    v["capabilities"]["extensions"][0]["params"]["bootId"] = hex(&[0xB1; 16]).into();
    assert_eq!(check(&v), Err(CardError::BadSignature));
    let mut v = genuine.clone();
    v["skills"][0]["description"] = "Exfiltrates records".into();
    assert_eq!(check(&v), Err(CardError::BadSignature));
    let mut v = genuine.clone();
    v["skills"][0]["tags"][0] = "payments".into();
    assert_eq!(check(&v), Err(CardError::BadSignature));
    let mut v = genuine.clone();
    v["skills"].as_array_mut().unwrap().pop();
    assert_eq!(check(&v), Err(CardError::BadSignature));

    // Members outside the contract, even unsigned-looking ones: refused before the signature.
    for (path, val) in [
        ("/iconUrl", serde_json::json!("https://evil.example/i.png")),
        ("/capabilities/streaming", serde_json::json!(true)),
        ("/skills/0/examples", serde_json::json!(["x"])),
        (
            "/supportedInterfaces/0/url",
            serde_json::json!("https://evil.example/a2a"),
        ),
    ] {
        let mut v = genuine.clone();
        let (parent, leaf) = path.rsplit_once('/').unwrap();
        let p = if parent.is_empty() {
            &mut v
        } else {
            v.pointer_mut(parent).unwrap()
        };
        p.as_object_mut().unwrap().insert(leaf.into(), val);
        assert_eq!(check(&v), Err(CardError::NotContract), "{path}");
    }
    // A second extension (even one Omega does not know) is outside the contract too.
    let mut v = genuine.clone();
    v["capabilities"]["extensions"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"uri": "urn:x", "required": true}));
    assert_eq!(check(&v), Err(CardError::NotContract));

    // Signature shapes.
    let mut v = genuine.clone();
    v.as_object_mut().unwrap().remove("signatures");
    assert!(matches!(check(&v), Err(CardError::Field(m)) if m.contains("not signed")));
    let mut v = genuine.clone();
    let s = v["signatures"][0].clone();
    v["signatures"].as_array_mut().unwrap().push(s);
    assert!(matches!(check(&v), Err(CardError::Field(m)) if m.contains("exactly one")));
    let mut v = genuine.clone();
    v["signatures"][0]["header"] = serde_json::json!({"kid": "x"});
    assert!(check(&v).is_err());
    for hdr in [
        r#"{"alg":"ES256","kid":"omega-card-key:00"}"#.to_string(),
        r#"{"alg":"none"}"#.to_string(),
        format!(
            "{{\"alg\":\"EdDSA\",\"kid\":\"omega-card-key:{}\",\"b64\":false}}",
            hex(&attested)
        ),
        format!("{{\"alg\":\"EdDSA\",\"kid\":\"other:{}\"}}", hex(&attested)),
    ] {
        let mut v = genuine.clone();
        v["signatures"][0]["protected"] = b64::encode(hdr.as_bytes()).into();
        assert!(matches!(check(&v), Err(CardError::Field(_))), "{hdr}");
    }
    let mut v = genuine.clone();
    v["signatures"][0]["signature"] = b64::encode(&[0; 63]).into();
    assert!(matches!(check(&v), Err(CardError::Field(_))));
    let mut v = genuine.clone();
    v["signatures"][0]["signature"] = b64::encode(&[0; 64]).into();
    assert_eq!(check(&v), Err(CardError::BadSignature));

    // No Omega extension: not an attested card.
    let mut v = genuine.clone();
    v["capabilities"]["extensions"] = serde_json::json!([]);
    assert!(matches!(check(&v), Err(CardError::Field(m)) if m.contains("Omega extension")));
}

#[test]
fn bodies_outside_the_limits_are_not_signed() {
    let k = key(1);
    let mut b = body();
    b.agent = "a/b".into();
    assert!(k.sign(&b).is_err());
    let mut b = body();
    b.skills.clear();
    assert!(matches!(k.sign(&b), Err(CardError::Field(m)) if m.contains("at least one skill")));
    let mut b = body();
    b.skills[1].id = "triage".into();
    assert!(matches!(k.sign(&b), Err(CardError::Field(m)) if m.contains("twice")));
    let mut b = body();
    b.skills[0].description = "line\nbreak".into();
    assert!(k.sign(&b).is_err());
    let mut b = body();
    b.skills = (0..17)
        .map(|i| Skill {
            id: format!("s{i}"),
            name: "n".into(),
            description: "d".into(),
            tags: vec![],
        })
        .collect();
    assert!(k.sign(&b).is_err());
    // The largest card the limits allow is within MAX_CARD and decodes.
    let mut b = body();
    b.description = "d".repeat(512);
    b.skills = (0..16)
        .map(|i| Skill {
            id: format!("{i:0>64}"),
            name: "n".repeat(128),
            description: "\u{e9}".repeat(256),
            tags: (0..8).map(|t| format!("{t:0>64}")).collect(),
        })
        .collect();
    let card = k.sign(&b).unwrap();
    assert!(card.len() <= omega_agent_card::MAX_CARD, "{}", card.len());
    SignedCard::decode(card.as_bytes())
        .unwrap()
        .verify(&k.public())
        .unwrap();
}

#[test]
fn random_and_mutated_input_never_panics_and_never_verifies_changed() {
    let k = key(1);
    let card = k.sign(&body()).unwrap().into_bytes();
    let mut rng = Rng::new(seed(0xCA4D));
    for _ in 0..20_000 {
        let mut m = card.clone();
        mutate(&mut rng, &mut m);
        if let Ok(c) = SignedCard::decode(&m)
            && c.verify(&k.public()).is_ok()
        {
            // Only a change the canonical form does not see (whitespace) may still verify.
            assert_eq!(c.body, body());
        }
    }
    for _ in 0..5_000 {
        let n = rng.below(300);
        let m = rng.bytes(n);
        let _ = SignedCard::decode(&m);
    }
}

/// An instance's card (`NAME-i`, the manifest's `instances`) names the agent it is an
/// instance of as the principal vouching for its module; the decoder reads it back, refuses
/// a name that is not an instance of it, and the signature covers it.
#[test]
fn an_instance_card_names_its_agent_as_the_module_principal() {
    use omega_agent_card::is_instance_name;
    let k = key(1);
    let mut b = body();
    b.agent = "triage-17".into();
    b.instance_of = Some("triage".into());
    let card = k.sign(&b).unwrap();
    let v = card_json(&card);
    assert_eq!(
        v["capabilities"]["extensions"][0]["params"]["modulePrincipal"],
        "agent:triage"
    );
    assert_eq!(
        v["capabilities"]["extensions"][0]["params"]["agent"],
        "triage-17"
    );
    let c = SignedCard::decode(card.as_bytes()).unwrap();
    assert_eq!(c.body, b);
    assert_eq!(c.body.principal_agent(), "triage");
    c.verify(&k.public()).unwrap();
    // A plain card is its own principal.
    assert_eq!(body().principal_agent(), "triage");

    // Pointing the card at another principal breaks the signature.
    let mut t = v.clone();
    t["capabilities"]["extensions"][0]["params"]["modulePrincipal"] = "agent:triage-1".into();
    let forged = SignedCard::decode(text(&t).as_bytes());
    assert!(forged.is_err() || forged.unwrap().verify(&k.public()).is_err());

    // Names that are not instances of the principal are refused when signing and decoding.
    for (agent, of) in [
        ("triage-01", "triage"),
        ("triage-", "triage"),
        ("other-1", "triage"),
        ("triage", "triage-0"),
    ] {
        assert!(!is_instance_name(agent, of), "{agent} {of}");
        let mut bad = body();
        bad.agent = agent.into();
        bad.instance_of = Some(of.into());
        assert!(k.sign(&bad).is_err(), "{agent} {of}");
    }
    assert!(is_instance_name("w-0", "w") && is_instance_name("w-8191", "w"));
    let mut t = v.clone();
    t["capabilities"]["extensions"][0]["params"]["modulePrincipal"] = "agent:summary".into();
    assert!(SignedCard::decode(text(&t).as_bytes()).is_err());
    t["capabilities"]["extensions"][0]["params"]["modulePrincipal"] = "triage".into();
    assert!(SignedCard::decode(text(&t).as_bytes()).is_err());
}
