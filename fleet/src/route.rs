//! Cross-image route authorization: may `from_role/from_agent` on one node message
//! `to_role/to_agent` on another? Default deny; the decision names the rule that decided.

use crate::credential::Credential;
use crate::policy::{ANY_AGENT, Endpoint, FleetPolicy};

/// The rule that decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Allowed by the policy's route at this index (canonical order).
    Route(usize),
    /// A credential of another fleet (or issued under another fleet's policy).
    OtherFleet,
    /// The sending or receiving agent is not pinned by the policy.
    UnpinnedAgent,
    /// No route matches: refused by default.
    DefaultDeny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub rule: Rule,
}

fn matches(e: &Endpoint, role: &str, agent: &str) -> bool {
    e.role == role && (e.agent == ANY_AGENT || e.agent == agent)
}

/// Decides a message from `from_agent` on the node holding `from` to `to_agent` on the node
/// holding `to`. The credentials must already be verified ([`Credential::verify`]).
pub fn authorize(
    policy: &FleetPolicy,
    from: &Credential,
    from_agent: &str,
    to: &Credential,
    to_agent: &str,
) -> Decision {
    let deny = |rule| Decision {
        allowed: false,
        rule,
    };
    if from.fleet_id != policy.fleet_id || to.fleet_id != policy.fleet_id {
        return deny(Rule::OtherFleet);
    }
    if policy.agent(from_agent).is_none() || policy.agent(to_agent).is_none() {
        return deny(Rule::UnpinnedAgent);
    }
    match policy.routes.iter().position(|r| {
        matches(&r.from, &from.role, from_agent) && matches(&r.to, &to.role, to_agent)
    }) {
        Some(i) => Decision {
            allowed: true,
            rule: Rule::Route(i),
        },
        None => deny(Rule::DefaultDeny),
    }
}
