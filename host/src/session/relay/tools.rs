//! Tools stream: one message = one line of JSON-RPC to and from the tool gateway process.

use std::io::{BufRead, BufReader, Read, Write};
use std::ops::ControlFlow;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use omega_wire::{Stream, msg::code};
use tracing::{info, warn};

use super::MessageRelay;
use crate::session::send::Shared;

/// Longest line the tool gateway may print (one JSON-RPC message).
pub const MAX_TOOL_LINE: usize = 1024 * 1024;

pub(crate) struct ToolsRelay {
    /// The gateway, or why it did not start (then every message is answered with it).
    gateway: Result<(Child, ChildStdin), String>,
}

impl ToolsRelay {
    /// Starts the gateway (`cmd` split like a shell would, run without a shell).
    pub(crate) fn start(sh: &Arc<Shared>, cmd: &str) -> Self {
        let spawn = || -> std::io::Result<(Child, ChildStdin)> {
            let argv = shlex::split(cmd).filter(|a| !a.is_empty()).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "cannot parse the command")
            })?;
            let mut child = Command::new(&argv[0])
                .args(&argv[1..])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()?;
            let stdin = child.stdin.take().expect("piped");
            let stdout = child.stdout.take().expect("piped");
            let sh = Arc::clone(sh);
            thread::spawn(move || gateway_to_guest(&sh, stdout));
            Ok((child, stdin))
        };
        let gateway = spawn().map_err(|e| {
            let m = format!("tool gateway {cmd:?} failed to start: {e}");
            warn!("{m}");
            sh.backend_error(Stream::Tools, m.clone());
            m
        });
        if gateway.is_ok() {
            info!("tool gateway started: {cmd}");
        }
        ToolsRelay { gateway }
    }
}

impl MessageRelay for ToolsRelay {
    const STREAM: Stream = Stream::Tools;
    const MAX_MESSAGE: usize = MAX_TOOL_LINE;
    const TOO_LARGE: &'static str = "tool message longer than MAX_TOOL_LINE";

    fn on_message(&mut self, sh: &Shared, msg: Vec<u8>) -> ControlFlow<()> {
        let stdin = match &mut self.gateway {
            Ok((_, stdin)) => stdin,
            Err(why) => {
                sh.send_error(Stream::Tools, code::BACKEND, why);
                return ControlFlow::Continue(());
            }
        };
        // One message = one line of JSON; a newline inside would split it.
        if msg.contains(&b'\n') {
            sh.send_error(
                Stream::Tools,
                code::PROTOCOL,
                "tool message contains a newline",
            );
        } else if let Err(e) = stdin
            .write_all(&msg)
            .and_then(|_| stdin.write_all(b"\n"))
            .and_then(|_| stdin.flush())
        {
            sh.send_error(Stream::Tools, code::BACKEND, &format!("tool gateway: {e}"));
        }
        ControlFlow::Continue(())
    }

    fn finish(self, _: &Shared) {
        if let Ok((child, stdin)) = self.gateway {
            // The end of its input is the gateway's cue to stop its servers and exit.
            drop(stdin);
            stop(child, GATEWAY_EXIT_GRACE);
        }
    }
}

/// How long the gateway gets to exit on its own after its input closes.
const GATEWAY_EXIT_GRACE: Duration = Duration::from_secs(2);

/// Waits up to `grace` for `child` to exit, then kills it; reaps it either way.
fn stop(mut child: Child, grace: Duration) {
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) => {
                info!("tool gateway exited: {status}");
                return;
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(_) => break,
        }
    }
    warn!("tool gateway still running {grace:?} after its input closed; killing it");
    let _ = child.kill();
    let _ = child.wait();
}

fn gateway_to_guest(sh: &Shared, stdout: ChildStdout) {
    let mut r = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        // SECURITY: a line longer than MAX_TOOL_LINE is cut off and reported, not buffered.
        match (&mut r)
            .take(MAX_TOOL_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) => break,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                } else if line.len() > MAX_TOOL_LINE {
                    sh.send_error(
                        Stream::Tools,
                        code::TOO_LARGE,
                        "tool gateway line too long; dropped",
                    );
                    // Skip the rest of the line.
                    let mut sink = Vec::new();
                    let _ = r.read_until(b'\n', &mut sink);
                    continue;
                }
                if sh.send_message(Stream::Tools, &line).is_err() {
                    return;
                }
            }
            Err(_) => break,
        }
    }
    sh.send_close(Stream::Tools);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_that_exits_on_end_of_input_is_not_killed() {
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        drop(child.stdin.take());
        let t = Instant::now();
        stop(child, Duration::from_secs(5));
        assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    }

    #[test]
    fn a_gateway_that_ignores_end_of_input_is_killed_after_the_grace() {
        let child = Command::new("sleep")
            .arg("60")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let t = Instant::now();
        stop(child, Duration::from_millis(300));
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert!(t.elapsed() < Duration::from_secs(10));
        // Reaped: the pid no longer names our child.
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}/stat")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| !s.contains("(sleep)"))
        );
    }
}
