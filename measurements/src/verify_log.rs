//! `measurements verify-log` (issue 5). Owned by the provenance work; placeholder until then.

#[derive(clap::Args, Debug)]
pub struct VerifyLogArgs {}

pub fn run(_args: &VerifyLogArgs) -> anyhow::Result<bool> {
    anyhow::bail!("verify-log is not implemented yet")
}
