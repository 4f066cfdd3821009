//! Writes sample evidence bundles for `measurements verify-evidence`:
//! `cargo run -p omega-evidence --example demo_evidence -- OUTDIR` produces one bundle per
//! principal (OUTDIR/<principal>.evidence, ':' replaced by '_'), on an UNATTESTED platform
//! (no SNP hardware here), with the report nonce 00..00 and a later principal
//! (`tool:calendar`) added by a root update and fresh for nonce 11..11.
//! Seeds and salts are fixed: for demonstrations only.

use omega_evidence::{Claim, Issuer};

fn main() {
    let out = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: demo_evidence OUTDIR"),
    );
    std::fs::create_dir_all(&out).unwrap();
    let mut iss = Issuer::new([0x42; 32]).unwrap();
    let claims = [
        Claim::Platform {
            tee: "none".into(),
            boot_id: [0xAA; 16],
        },
        Claim::Agent {
            name: "triage".into(),
            module_hash: [1; 32],
            publisher: "acme-health".into(),
        },
        Claim::Policy { digest: [2; 32] },
        Claim::Model {
            name: "smollm2".into(),
            proxy_identity: [3; 32],
            model_digest: [4; 32],
            gpu_evidence_digest: None,
        },
        Claim::Tool {
            name: "ehr.lookup".into(),
            pinned: [5; 32],
        },
        Claim::LogKey {
            public: [6; 32],
            boot_id: [0xAA; 16],
        },
        Claim::Bundle {
            manifest_digest: [7; 32],
        },
    ];
    let mut names = Vec::new();
    for (i, c) in claims.into_iter().enumerate() {
        names.push(c.principal());
        iss.add(c, [0x80 + i as u8; 32]).unwrap();
    }
    let rd = iss.attest([0; 32]).unwrap();
    println!(
        "REPORT_DATA to request: {}",
        omega_provenance::proof_file::hex(&rd)
    );
    for p in &names {
        let b = iss.bundle(p, None, None).unwrap();
        std::fs::write(
            out.join(format!("{}.evidence", p.replace(':', "_"))),
            b.encode().unwrap(),
        )
        .unwrap();
    }
    iss.add(
        Claim::Tool {
            name: "calendar".into(),
            pinned: [7; 32],
        },
        [0x90; 32],
    )
    .unwrap();
    iss.publish_update().unwrap();
    let b = iss.bundle("tool:calendar", None, Some([0x11; 32])).unwrap();
    std::fs::write(out.join("tool_calendar.evidence"), b.encode().unwrap()).unwrap();
    println!("wrote {} bundles to {}", names.len() + 1, out.display());
}
