//! The Omega policy compiler: language → checked policy → binary form and Rego.
//!
//! - [`compile::compile`] parses and type-checks a policy file ([`diag::Diagnostics`] on error).
//! - [`compile::Compiled::to_bytes`] gives the binary form the monitor evaluates.
//! - [`rego::emit`] gives an equivalent Rego module (OPA v1 syntax).
//! - [`request`] turns a JSON request (the Rego `input`) into an evaluator request.

pub mod compile;
pub mod diag;
pub mod rego;
pub mod request;
pub mod syntax;

pub use compile::{Compiled, compile};
