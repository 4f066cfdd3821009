//! One VM shape, one digest (issue 13, finding 8): the SEV-SNP command line the launcher
//! prints, parsed back, gives `measurements digest` exactly the digest the launcher printed
//! for it; and every QEMU `-cpu` model the launcher can launch has the CPUID signature the
//! digest is computed with.

use std::io::Write;
use std::process::{Command, Stdio};

use omega_host::shape::{VcpuType, cpu_sig};
use qemu_tests::{image, workspace_bin};

/// What the launcher's SNP command line says about the VM's shape.
#[derive(Debug)]
struct Parsed {
    cpu: String,
    vcpus: String,
    policy: String,
}

fn parse_snp_command(line: &str) -> Parsed {
    // The launcher shell-quotes words with special characters; none of these values needs it.
    let words: Vec<&str> = line
        .split_whitespace()
        .map(|w| w.trim_matches('\''))
        .collect();
    let after = |opt: &str| -> Vec<&str> {
        words
            .windows(2)
            .filter(|w| w[0] == opt)
            .map(|w| w[1])
            .collect()
    };
    let one = |opt: &str| {
        let v = after(opt);
        assert_eq!(v.len(), 1, "{opt} given {} times in: {line}", v.len());
        v[0].to_string()
    };
    assert_eq!(one("-accel"), "kvm", "{line}");
    assert!(
        one("-machine").contains("confidential-guest-support=sev0"),
        "{line}"
    );
    let snp = after("-object")
        .into_iter()
        .find(|o| o.starts_with("sev-snp-guest,"))
        .unwrap_or_else(|| panic!("no sev-snp-guest object in: {line}"));
    let policy = snp
        .split(',')
        .find_map(|p| p.strip_prefix("policy="))
        .unwrap_or_else(|| panic!("no policy in {snp}"))
        .to_string();
    Parsed {
        cpu: one("-cpu"),
        vcpus: one("-smp"),
        policy,
    }
}

#[test]
fn the_printed_digest_is_the_digest_of_the_printed_command_line() {
    let omega = workspace_bin("omega-host", "omega");
    let measurements = workspace_bin("measurements", "measurements");
    let image = image();
    for (vcpus, cpu) in [
        ("1", None),
        ("4", Some("EPYC-Milan")),
        ("2", Some("EPYC-Genoa-v1")),
        ("3", Some("EPYC-Rome")),
    ] {
        let mut cmd = Command::new(&omega);
        cmd.args(["print-command", "--sev-snp", "--vcpus", vcpus])
            .arg("--image")
            .arg(image);
        if let Some(c) = cpu {
            cmd.args(["--cpu", c]);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut lines = stdout.lines();
        let command = lines.next().expect("the command line");
        let printed = lines.next().expect("the digest line");
        let parsed = parse_snp_command(command);
        assert_eq!(parsed.vcpus, vcpus);
        assert_eq!(parsed.cpu, cpu.unwrap_or("EPYC-v4"));
        assert_eq!(parsed.policy, "0x30000");
        let digest = printed
            .strip_prefix("# SNP launch digest ")
            .and_then(|r| r.split(' ').next())
            .unwrap_or_else(|| panic!("{printed}"));
        assert!(
            printed.ends_with(&format!("guest features 0x1, policy {}", parsed.policy)),
            "{printed}"
        );
        // QEMU 10's sev-snp-guest always launches with SEV_FEATURES = 0x1 (SNP active).
        let m = Command::new(&measurements)
            .args([
                "digest",
                "--vcpus",
                &parsed.vcpus,
                "--vcpu-type",
                &parsed.cpu,
            ])
            .args(["--guest-features", "0x1", "--image"])
            .arg(image)
            .output()
            .unwrap();
        assert!(m.status.success(), "{}", String::from_utf8_lossy(&m.stderr));
        assert_eq!(
            String::from_utf8_lossy(&m.stdout).trim(),
            digest,
            "{command}"
        );
    }
}

/// Family, model and stepping QEMU gives a `-cpu` model (QMP `query-cpu-model-expansion`).
fn qemu_signature(model: &str) -> Option<u32> {
    let mut q = Command::new("qemu-system-x86_64")
        .args(["-machine", "microvm", "-accel", "tcg", "-nodefaults", "-S"])
        .args(["-display", "none", "-qmp", "stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64");
    write!(
        q.stdin.take().unwrap(),
        "{{\"execute\":\"qmp_capabilities\"}}\n\
         {{\"execute\":\"query-cpu-model-expansion\",\"arguments\":{{\"type\":\"full\",\"model\":{{\"name\":\"{model}\"}}}}}}\n\
         {{\"execute\":\"quit\"}}\n"
    )
    .unwrap();
    let out = String::from_utf8(q.wait_with_output().unwrap().stdout).unwrap();
    // `"model": {"name": ...}` also occurs: take the occurrence with a number.
    let prop = |name: &str| -> Option<u32> {
        let key = format!("\"{name}\": ");
        out.match_indices(&key).find_map(|(at, _)| {
            let digits: String = out[at + key.len()..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            digits.parse().ok()
        })
    };
    Some(cpu_sig(prop("family")?, prop("model")?, prop("stepping")?))
}

#[test]
fn every_qemu_epyc_model_is_measured_with_its_signature_or_refused() {
    let omega = workspace_bin("omega-host", "omega");
    let help = Command::new("qemu-system-x86_64")
        .args(["-cpu", "help"])
        .output()
        .expect("qemu-system-x86_64");
    let help = String::from_utf8_lossy(&help.stdout);
    let models: Vec<&str> = help
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|m| m.starts_with("EPYC"))
        .collect();
    assert!(models.contains(&"EPYC-v4"), "{help}");
    let mut checked = 0;
    for model in &models {
        match model.parse::<VcpuType>() {
            Ok(t) => {
                let sig = qemu_signature(model).unwrap_or_else(|| panic!("{model}: no signature"));
                assert_eq!(
                    sig,
                    t.signature(),
                    "{model}: QEMU gives {sig:#x}, the digest uses {:#x}",
                    t.signature()
                );
                checked += 1;
            }
            Err(_) => {
                // A model the digest does not know (e.g. EPYC-Rome-v4) cannot be launched.
                let out = Command::new(&omega)
                    .args(["print-command", "--image", "x", "--sev-snp", "--cpu", model])
                    .output()
                    .unwrap();
                assert!(!out.status.success(), "{model} accepted");
                eprintln!("{model}: refused (the digest has no signature for it)");
            }
        }
    }
    for t in VcpuType::NAMED {
        let name = t.name().unwrap();
        if !models.contains(&name) {
            eprintln!("{name}: not in this QEMU (newer QEMUs have it)");
        }
    }
    assert!(checked >= 10, "only {checked} models checked");
}
