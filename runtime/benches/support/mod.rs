//! What the runtime's benchmarks share: a monitor that does nothing, percentiles.

use std::time::Duration;

use omega_agent_abi as abi;
use omega_runtime::{
    AgentEvent, AgentSpec, Answer, Backpressure, DataError, Egress, EgressReply, Monitor, Record,
    RestartPolicy, Runtime, RuntimeConfig,
};

use crate::common::{Declared, policy};

/// A runtime under the tests' policy declaring `agents` (name, module, cleared labels),
/// with a [`Quiet`] monitor; nothing loaded yet.
pub fn runtime(agents: &[(&'static str, &[u8], u64)]) -> Runtime<'static, Quiet> {
    let declared: Vec<Declared> = agents
        .iter()
        .map(|&(name, module, cleared)| Declared {
            name,
            module: module.to_vec(),
            cleared,
        })
        .collect();
    Runtime::new(
        policy(&declared),
        Quiet::default(),
        RuntimeConfig::default(),
    )
}

/// Agent `name` running `module` with the default limits, never restarted.
pub fn spec<'a>(name: &'a str, module: &'a [u8]) -> AgentSpec<'a> {
    AgentSpec {
        name,
        module,
        limits: Default::default(),
        restart: RestartPolicy::Never,
    }
}

/// A monitor that does nothing but count (so the figures are the runtime's own).
#[derive(Default)]
pub struct Quiet {
    time: u64,
    records: u64,
}

impl Quiet {
    /// Provenance records appended so far (each decision is one).
    pub fn records(&self) -> u64 {
        self.records
    }
}

impl Monitor for Quiet {
    fn now_ms(&mut self) -> u64 {
        self.time += 1;
        self.time
    }
    fn random(&mut self, buf: &mut [u8]) {
        buf.fill(1);
    }
    fn append_record(&mut self, _: &Record<'_>) -> Result<(), Backpressure> {
        self.records += 1;
        Ok(())
    }
    fn model_identity(&mut self, _: &str) -> Option<[u8; 32]> {
        None
    }
    fn tool_entry(&mut self, _: &str) -> Option<[u8; 32]> {
        None
    }
    fn egress(&mut self, _: &str, _: Egress<'_>, _: bool) -> EgressReply {
        EgressReply::Answer(Answer::Unavailable(String::new()))
    }
    fn read_data(
        &mut self,
        _: &str,
        _: &str,
        _: u64,
        _: u32,
        _: &mut Vec<u8>,
    ) -> Result<u64, DataError> {
        Err(DataError::NotFound)
    }
    fn log(&mut self, _: &str, _: abi::Level, _: &str) {}
    fn event(&mut self, _: &str, _: AgentEvent<'_>) {}
}

/// The `p` quantile (0..=1) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

/// Few samples: `-- --quick`, and `cargo test --benches` (which runs without `--bench`).
pub fn quick() -> bool {
    std::env::args().any(|a| a == "--quick" || a == "--test")
        || !std::env::args().any(|a| a == "--bench")
}
