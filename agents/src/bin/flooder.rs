//! Hostile: abuses its rate. It may read the patient index, but the policy limits how often
//! (`limit flooder_rate`); it asks many times in a row. Every read past the limit must be
//! denied with the limit's name, in the provenance log; its exit code is how many reads got
//! through (the limit's maximum: contained).
#![no_std]
#![no_main]

use omega_example_agents::{EHR, PATIENT_INDEX};

omega_sdk::entry!(main);

/// How many times it asks: well past any sane limit.
const TRIES: i32 = 50;

fn main() -> Result<(), omega_sdk::Error> {
    let mut got = 0;
    for _ in 0..TRIES {
        if omega_sdk::read_to_end(EHR, PATIENT_INDEX).is_ok() {
            got += 1;
        }
    }
    omega_sdk::exit(got)
}
