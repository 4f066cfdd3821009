//! What the compiled policy requires of the proxy, as [`Expectations`]: one candidate per
//! model, in the policy's order (the monitor hands them to [`crate::Session::new`] and reads
//! the verdict per model back with [`crate::Session::verdicts`]).

use alloc::vec::Vec;

use omega_gpu_evidence::ReferenceValue;
use omega_policy::Policy;

use crate::check::{Expectations, GpuRequirement};

/// The expectations of each of `policy`'s models: its pinned proxy identity and, for a model
/// declared with `gpu { measurement … }`, a confidential GPU whose evidence verifies against
/// NVIDIA's device identity root and those reference measurements. No TEE requirement: the
/// monitor applies that to labelled data per call (no TEE report is verified yet).
pub fn expectations(policy: &Policy<'_>) -> Vec<Expectations> {
    policy
        .models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut e = Expectations::from_policy(m.hash, false);
            e.require_confidential_gpu = policy.gpu_requirement(i).map(|g| GpuRequirement {
                reference: g
                    .reference
                    .iter()
                    .map(|r| ReferenceValue {
                        index: r.index,
                        allowed: r.allowed.iter().map(|v| v.to_vec()).collect(),
                    })
                    .collect(),
                root_der: None,
            });
            e
        })
        .collect()
}
