//! JSON view of a bundle (std): hex strings for bytes, the decoded claim alongside.

use std::string::String;
use std::vec::Vec;

use serde_json::{Value, json};

use crate::bundle::{Binding, Bundle};
use crate::claim::{Claim, SaltedLeaf};

fn hex(b: &[u8]) -> String {
    omega_provenance::proof_file::hex(b)
}

fn claim_json(c: &Claim) -> Value {
    match c {
        Claim::Platform { tee, boot_id } => {
            json!({"kind": "platform", "tee": tee, "boot_id": hex(boot_id)})
        }
        Claim::Agent {
            name,
            module_hash,
            publisher,
        } => {
            json!({"kind": "agent", "name": name, "module_hash": hex(module_hash), "publisher": publisher})
        }
        Claim::Policy { digest } => json!({"kind": "policy", "digest": hex(digest)}),
        Claim::Model {
            name,
            proxy_identity,
            model_digest,
            gpu_evidence_digest,
        } => json!({
            "kind": "model", "name": name, "proxy_identity": hex(proxy_identity),
            "model_digest": hex(model_digest),
            "gpu_evidence_digest": gpu_evidence_digest.as_ref().map(|d| hex(d)),
        }),
        Claim::Tool { name, pinned } => {
            json!({"kind": "tool", "name": name, "pinned": hex(pinned)})
        }
        Claim::LogKey { public, boot_id } => {
            json!({"kind": "log", "public_key": hex(public), "boot_id": hex(boot_id)})
        }
        Claim::Bundle { manifest_digest } => {
            json!({"kind": "bundle", "manifest_digest": hex(manifest_digest)})
        }
        Claim::CardKey { public, boot_id } => {
            json!({"kind": "card", "public_key": hex(public), "boot_id": hex(boot_id)})
        }
        Claim::ToolServer {
            server,
            tools,
            pins_digest,
            identity,
        } => json!({
            "kind": "tools", "server": server, "tools": tools, "pins_digest": hex(pins_digest),
            "identity": identity.as_ref().map(|i| json!({
                "command": i.command, "package": i.package, "version": i.version,
            })),
        }),
        Claim::PeerKey { public, boot_id } => {
            json!({"kind": "peer", "public_key": hex(public), "boot_id": hex(boot_id)})
        }
        Claim::Coordinator {
            public,
            owner,
            min_policy_version,
            boot_id,
        } => json!({
            "kind": "coordinator", "public_key": hex(public), "owner": hex(owner),
            "min_policy_version": min_policy_version, "boot_id": hex(boot_id),
        }),
    }
}

/// The JSON view (informational; the postcard bytes are authoritative).
pub fn to_json(b: &Bundle) -> Value {
    let leaf = SaltedLeaf::decode(&b.leaf).ok();
    json!({
        "version": b.version,
        "monitor_key": hex(&b.monitor_key),
        "report_nonce": hex(&b.report_nonce),
        "base": {"size": b.base_size, "root": hex(&b.base_root)},
        "updates": b.updates.iter().map(|u| json!({
            "seq": u.seq, "new_size": u.new_size, "new_root": hex(&u.new_root),
            "consistency": u.consistency.iter().map(|h| hex(h)).collect::<Vec<_>>(),
            "revoked": u.revoked, "signature": hex(&u.signature),
        })).collect::<Vec<_>>(),
        "head": b.head.as_ref().map(|h| json!({"nonce": hex(&h.nonce), "signature": hex(&h.signature)})),
        "leaf": {
            "index": b.leaf_index,
            "bytes": hex(&b.leaf),
            "salt": leaf.as_ref().map(|l| hex(&l.salt)),
            "principal": leaf.as_ref().map(|l| l.claim.principal()),
            "claim": leaf.as_ref().map(|l| claim_json(&l.claim)),
        },
        "inclusion": b.inclusion.iter().map(|h| hex(h)).collect::<Vec<_>>(),
        "binding": match &b.binding {
            Binding::Snp { report } => json!({"kind": "sev-snp", "report": hex(report)}),
            Binding::Unattested { report_data } => json!({"kind": "UNATTESTED", "report_data": hex(report_data)}),
        },
    })
}

#[cfg(test)]
mod tests {
    use crate::{Claim, Issuer};

    #[test]
    fn json_view_shows_own_claim_only() {
        let mut iss = Issuer::new([3; 32]).unwrap();
        iss.add(Claim::Policy { digest: [0xAB; 32] }, [1; 32])
            .unwrap();
        iss.add(
            Claim::Tool {
                name: "secret-tool".into(),
                pinned: [0xCD; 32],
            },
            [2; 32],
        )
        .unwrap();
        iss.attest([0; 32]).unwrap();
        let v = super::to_json(&iss.bundle("policy", None, None).unwrap());
        assert_eq!(v["leaf"]["principal"], "policy");
        assert_eq!(v["leaf"]["claim"]["digest"], "ab".repeat(32));
        assert_eq!(v["binding"]["kind"], "UNATTESTED");
        let s = serde_json::to_string(&v).unwrap();
        assert!(!s.contains("secret-tool") && !s.contains(&"cd".repeat(32)));
    }
}
