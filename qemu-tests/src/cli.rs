//! The command lines the tests run and take apart: a finished command's text, the verifier
//! commands `omega run` printed (a flag's value, the same command with one value
//! changed), and `measurements` run on them, which must verify or must refuse.

use std::process::Output;

use crate::measurements;

/// A finished command's stdout, then its stderr, as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The value after `flag` in `argv` (panics when `argv` has no such flag).
#[track_caller]
pub fn flag<'a>(argv: &'a [String], flag: &str) -> &'a str {
    let i = argv
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} in {argv:?}"));
    &argv[i + 1]
}

/// `argv` with the value of `f` replaced by `value` (panics when `argv` has no `f`).
#[track_caller]
pub fn with(argv: &[String], f: &str, value: &str) -> Vec<String> {
    let mut out = argv.to_vec();
    let i = out
        .iter()
        .position(|a| a == f)
        .unwrap_or_else(|| panic!("{f} in {argv:?}"));
    out[i + 1] = value.to_string();
    out
}

/// Runs `measurements argv`, which must fail, saying `because` (a FAIL line of the check
/// that caught it, or the usage error), and print no `VERIFIED` line; `why` names the
/// forgery in the messages. Returns what it printed.
#[track_caller]
pub fn refused(argv: &[String], why: &str, because: &str) -> String {
    let o = measurements(argv);
    let out = text(&o);
    assert!(
        !o.status.success(),
        "{why}: measurements accepted it\n{argv:?}\n{out}"
    );
    assert!(
        out.contains(because),
        "{why}: refused, but not for {because:?}\n{out}"
    );
    assert!(
        !out.lines().any(|l| l.starts_with("VERIFIED")),
        "{why}: printed VERIFIED\n{out}"
    );
    eprintln!("{why}: refused as it must be:\n{}", out.trim_end());
    out
}

/// Runs `measurements argv`, which must succeed (`what` names it in the message).
/// Returns what it printed.
#[track_caller]
pub fn verified(argv: &[String], what: &str) -> String {
    let o = measurements(argv);
    let out = text(&o);
    assert!(o.status.success(), "{what} did not verify\n{argv:?}\n{out}");
    out
}
