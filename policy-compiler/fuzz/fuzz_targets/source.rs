//! A policy author's file into the compiler (parser, checker, binary encoder, Rego emitter,
//! diagnostics renderer). Invariants: no panic on any text; a policy that compiles has a
//! binary form the monitor's decoder accepts and that re-encodes to the same bytes (the
//! compiler and the monitor agree on every policy the compiler emits); its Rego module
//! and every diagnostic render.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    // `schema file` paths resolve against a folder that does not exist.
    match policy_compiler::compile("fuzz.policy", src, Path::new("/nonexistent/omega-fuzz")) {
        Ok(c) => {
            let bytes = c.to_bytes();
            let p =
                omega_policy::decode(&bytes).expect("the monitor decodes what the compiler emits");
            assert_eq!(omega_policy::encode(&p).expect("re-encodes"), bytes);
            let _ = policy_compiler::rego::emit(&c, "00");
        }
        Err(d) => {
            assert!(!d.0.is_empty(), "an error without a diagnostic");
            let _ = d.render();
            let _ = d.to_string();
        }
    }
});
