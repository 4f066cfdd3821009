//! The lab platform's secrets, shared by the simulated PSP (`sim-psp/`, host side, tests
//! only) and test-hooks images of the monitor. They are public: anything they protect is
//! marked `tee: simulated` and verifiers accept it only with an explicit lab-root flag.

/// VMPCK0 of the simulated platform (a fixed, published test key).
// SECURITY: a production image must never use this key: the kernel reads it only under its
// `test-hooks` feature, and evidence made with it says `tee: simulated`.
pub const VMPCK0: [u8; 32] = *b"omega-lab-vmpck0-public-test-key";

/// CHIP_ID the simulated PSP puts in its reports (and its lab VCEK's hwID extension).
pub const CHIP_ID: [u8; 64] = {
    let mut id = [0u8; 64];
    let tag = b"omega-lab-chip";
    let mut i = 0;
    while i < tag.len() {
        id[i] = tag[i];
        i += 1;
    }
    id
};
