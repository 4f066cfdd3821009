use std::path::Path;

use super::*;

/// A model's printed check expects the proxy identity the bundle's policy pins for it;
/// other principals' and unpinned models' checks carry no `--expect-proxy`.
#[test]
fn a_models_printed_check_expects_the_policys_proxy_pin() {
    let src = "policy \"p\"\nmodel llm { proxy \"sha256:".to_string()
        + &"ab".repeat(32)
        + "\" cleared [] }\nrule ask { allow infer llm }\n";
    let policy = policy_compiler::compile("p.policy", &src, Path::new("."))
        .unwrap()
        .to_bytes();
    let bundle = Bundle {
        manifest: omega_bundle::Manifest::parse(&omega_bundle::Manifest::json(
            "policy.bin",
            [("asker", "asker.wasm")],
        ))
        .unwrap(),
        files: vec![
            ("manifest.json".into(), Vec::new()),
            ("policy.bin".into(), policy),
        ],
    };
    let pins = model_pins(&bundle);
    assert_eq!(pins, [("llm".to_string(), [0xab; 32])]);
    let run = Run {
        image: Path::new("omega.bin"),
        dir: Path::new("run1"),
        nonce: "00",
        platform: Platform::None,
        shape: VmShape::new(1),
        model_pins: &pins,
    };
    let args = evidence_command(&run, "model:llm", "model_llm.bin");
    let at = args.iter().position(|a| a == "--expect-proxy").unwrap();
    assert_eq!(args[at + 1], format!("sha256:{}", "ab".repeat(32)));
    for p in ["model:other", "policy"] {
        assert!(!evidence_command(&run, p, "x.bin").contains(&"--expect-proxy".to_string()));
    }
}
