//! The checked policy's in-memory form (owned strings) and its view as the binary model.

use super::*;

/// A checked policy with owned strings; [`Compiled::policy`] views it as the binary model.
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    pub name: String,
    pub labels: Vec<String>,
    pub agents: Vec<AgentIr>,
    pub tools: Vec<TargetIr>,
    pub models: Vec<TargetIr>,
    pub sources: Vec<SourceIr>,
    pub rules: Vec<RuleIr>,
    pub limits: Vec<LimitIr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentIr {
    pub name: String,
    pub hash: [u8; 32],
    pub cleared: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TargetIr {
    pub name: String,
    pub hash: [u8; 32],
    pub cleared: u64,
    pub result: u64,
    /// Tools only: the JSON input schema arguments are typed against.
    pub schema: Option<Json>,
    /// Models only: the confidential-GPU evidence the proxy must present, as reference
    /// measurements by ascending SPDM index (`gpu { … }`); `None`: not required.
    pub gpu: Option<Vec<GpuRefIr>>,
}

/// One reference measurement: SPDM block `index` must equal one of `allowed`.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuRefIr {
    pub index: u8,
    pub allowed: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SourceIr {
    pub name: String,
    pub labels: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleIr {
    pub name: String,
    pub effect: op::Effect,
    pub action: op::RuleAction,
    pub target: Option<u16>,
    pub agents: Option<u64>,
    pub constraints: Vec<ConstraintIr>,
    pub declassify: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LimitIr {
    pub name: String,
    pub action: op::RuleAction,
    pub target: Option<u16>,
    pub agents: Option<u64>,
    pub max: u32,
    pub window_secs: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SubjectIr {
    /// An argument: its path parts (`["patient", "id"]`) and the dotted path (`patient.id`).
    Arg {
        parts: Vec<String>,
        path: String,
    },
    MaxTokens,
    Path,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LitIr {
    Int(i64),
    Str(String),
    Bool(bool),
    Ints(Vec<i64>),
    Strs(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConstraintIr {
    pub subject: SubjectIr,
    pub op: op::Op,
    pub value: LitIr,
}

impl Compiled {
    /// The binary model, borrowing this policy's strings.
    pub fn policy(&self) -> op::Policy<'_> {
        fn target(t: &TargetIr) -> op::Target<'_> {
            op::Target {
                name: &t.name,
                hash: t.hash,
                cleared: t.cleared,
                result: t.result,
            }
        }
        op::Policy {
            name: &self.name,
            labels: self.labels.iter().map(String::as_str).collect(),
            agents: self
                .agents
                .iter()
                .map(|a| op::Agent {
                    name: &a.name,
                    hash: a.hash,
                    cleared: a.cleared,
                })
                .collect(),
            tools: self.tools.iter().map(target).collect(),
            models: self.models.iter().map(target).collect(),
            sources: self
                .sources
                .iter()
                .map(|s| op::Source {
                    name: &s.name,
                    labels: s.labels,
                })
                .collect(),
            rules: self
                .rules
                .iter()
                .map(|r| op::Rule {
                    name: &r.name,
                    effect: r.effect,
                    action: r.action,
                    target: r.target,
                    agents: r.agents,
                    constraints: r.constraints.iter().map(|c| c.view()).collect(),
                    declassify: r.declassify,
                })
                .collect(),
            limits: self
                .limits
                .iter()
                .map(|l| op::Limit {
                    name: &l.name,
                    action: l.action,
                    target: l.target,
                    agents: l.agents,
                    max: l.max,
                    window_secs: l.window_secs,
                })
                .collect(),
            gpu: self
                .models
                .iter()
                .enumerate()
                .filter_map(|(i, m)| Some((u16::try_from(i).ok()?, m.gpu.as_ref()?)))
                .map(|(model, refs)| op::GpuRequirement {
                    model,
                    reference: refs
                        .iter()
                        .map(|r| op::GpuMeasurement {
                            index: r.index,
                            allowed: r.allowed.iter().map(Vec::as_slice).collect(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// The binary form (header + postcard).
    pub fn to_bytes(&self) -> Vec<u8> {
        op::encode(&self.policy()).expect("the checker only produces valid policies")
    }

    /// Label names of a set, in declaration order.
    pub fn label_names(&self, set: u64) -> Vec<String> {
        self.labels
            .iter()
            .enumerate()
            .filter(|(i, _)| set & (1u64 << i) != 0)
            .map(|(_, l)| l.clone())
            .collect()
    }
}

impl ConstraintIr {
    fn view(&self) -> op::Constraint<'_> {
        op::Constraint {
            subject: match &self.subject {
                SubjectIr::Arg { path, .. } => op::Subject::Arg(path),
                SubjectIr::MaxTokens => op::Subject::MaxTokens,
                SubjectIr::Path => op::Subject::Path,
            },
            op: self.op,
            value: match &self.value {
                LitIr::Int(n) => op::Lit::Int(*n),
                LitIr::Str(s) => op::Lit::Str(s),
                LitIr::Bool(b) => op::Lit::Bool(*b),
                LitIr::Ints(v) => op::Lit::Ints(v.clone()),
                LitIr::Strs(v) => op::Lit::Strs(v.iter().map(String::as_str).collect()),
            },
        }
    }
}
