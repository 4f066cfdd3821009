//! `measurements verify-evidence` (issue 5). Owned by the evidence work; placeholder until then.

#[derive(clap::Args, Debug)]
pub struct VerifyEvidenceArgs {}

pub fn run(_args: &VerifyEvidenceArgs) -> anyhow::Result<bool> {
    anyhow::bail!("verify-evidence is not implemented yet")
}
