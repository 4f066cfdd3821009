//! An idle image halts its vCPU instead of spinning on the channel (`kernel/src/hw/idle.rs`),
//! and wakes at once when the host sends something.
//!
//! Runs the `idle-bench` binary (the measurement and its bounds live there, once) against
//! the production image with the launcher's session connected. The bound is generous
//! for a loaded CI machine: 5 % of one host core over 5 s under TCG, where a spinning
//! monitor uses whatever share of a core the host scheduler gives it (44 % measured on the
//! 2-core project machine at load 11, 100 % on an idle one) and the halting one about
//! 0.3 %. The first echo after the idle spell must wake the halted monitor through the
//! channel's interrupt (the monitor says so on its console) within 50 ms, half its 100 ms
//! fallback tick; a woken one answers in about 1-2 ms.

use std::process::Command;

use qemu_tests::{image, workspace_bin};

#[test]
fn an_idle_image_leaves_the_host_core_alone() {
    let bench = workspace_bin("qemu-tests", "idle-bench");
    let out = Command::new(&bench)
        .arg("--image")
        .arg(image())
        // The monitor halts 1 ms after its last input; the bench waits for the first halt
        // (generously: up to 120 s on a loaded machine, where boot itself is slow), then
        // 1 s more.
        .args(["--halt-timeout", "120", "--settle", "1"])
        .args(["--seconds", "5", "--echo-runs", "5"])
        .args(["--max-percent", "5", "--max-echo-ms", "50"])
        .output()
        .expect("running idle-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(
        out.status.success(),
        "idle-bench failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("omega: idle: halting; channel interrupt GSI"),
        "the monitor did not route the channel's interrupt:\n{stdout}"
    );
    assert!(
        stdout.contains("omega: idle: woken by the channel interrupt"),
        "the echo did not wake the halted monitor through the channel's interrupt:\n{stdout}"
    );
}
