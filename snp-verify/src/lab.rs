//! The simulated PSP's lab chain (`omega-sim-psp`, `sim-psp/lab/`): public test
//! certificates shaped like AMD's, so that a verifier, and a coordinator inside an image,
//! can check "simulated" reports. Not an AMD root: a report verified under it stands for
//! `tee: simulated`, which verifiers accept only when told to.

/// The lab root (ARK) certificate, PEM.
pub const ARK_PEM: &[u8] = include_bytes!("../../sim-psp/lab/ark.pem");
/// The lab signing certificate (ASK), PEM, signed by [`ARK_PEM`].
pub const ASK_PEM: &[u8] = include_bytes!("../../sim-psp/lab/ask.pem");
/// The lab VCEK certificate, DER, signed by [`ASK_PEM`].
pub const VCEK_DER: &[u8] = include_bytes!("../../sim-psp/lab/vcek.der");
