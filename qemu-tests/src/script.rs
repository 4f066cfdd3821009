//! Test agents as WAT scripts: host calls made in order, each with the return it must see.
//! The QEMU tests of inference and tools build their agents here; an agent exits 0 when
//! every step got what it must, else with the failing step's number.

use std::fmt::Write as _;

use omega_agent_abi as abi;

/// What a step's call must return.
pub enum Expect {
    /// Exactly this response (its length, and these bytes in the out buffer).
    Bytes(Vec<u8>),
    /// This return value (an error code, negated).
    Code(i32),
    /// A response of any length.
    Positive,
}

pub enum Step {
    /// Calls host function `func` with `request` in, the out buffer out.
    Call {
        func: &'static str,
        request: Vec<u8>,
        expect: Expect,
    },
    /// Busy-waits this many milliseconds of monitor time.
    Wait(u64),
    /// `result_take`: the held detail of the previous call's error must be exactly this.
    Detail(Vec<u8>),
}

/// WAT `$eq(a, b, n) -> 1 if the n bytes at a and b are equal, else 0`, for any script.
pub const EQ_FUNC: &str = r#"  (func $eq (param $a i32) (param $b i32) (param $n i32) (result i32)
    (block $no
      (loop $l
        (if (i32.eqz (local.get $n)) (then (return (i32.const 1))))
        (br_if $no (i32.ne (i32.load8_u (local.get $a)) (i32.load8_u (local.get $b))))
        (local.set $a (i32.add (local.get $a) (i32.const 1)))
        (local.set $b (i32.add (local.get $b) (i32.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $l)))
    (i32.const 0))"#;

pub const OUT: u32 = 0x20000;
pub const OUT_CAP: u32 = 0x10000;

/// An agent that makes `steps` in order and exits 0 if each returned what it must, else
/// with the failing step's number (+100 for a wrong length, +200 for wrong bytes).
pub fn script(steps: &[Step]) -> Vec<u8> {
    let mut data = String::new();
    let mut body = String::new();
    let mut at = 1024u32;
    let mut place = |bytes: &[u8], data: &mut String| {
        let start = at;
        let hex: String = bytes.iter().map(|b| format!("\\{b:02x}")).collect();
        writeln!(data, "  (data (i32.const {start}) \"{hex}\")").unwrap();
        at += (bytes.len() as u32).div_ceil(16) * 16 + 16;
        assert!(at < OUT, "script data too large");
        start
    };
    for (i, step) in steps.iter().enumerate() {
        let n = i + 1;
        match step {
            Step::Call {
                func,
                request,
                expect,
            } => {
                let req = place(request, &mut data);
                writeln!(
                    body,
                    "    (local.set $r (call ${func} (i32.const {req}) (i32.const {}) (i32.const {OUT}) (i32.const {OUT_CAP})))",
                    request.len()
                )
                .unwrap();
                match expect {
                    Expect::Code(c) => writeln!(
                        body,
                        "    (if (i32.ne (local.get $r) (i32.const {c})) (then (call $exit (i32.const {n}))))"
                    ),
                    Expect::Positive => writeln!(
                        body,
                        "    (if (i32.le_s (local.get $r) (i32.const 0)) (then (call $exit (i32.const {n}))))"
                    ),
                    Expect::Bytes(b) => {
                        let exp = place(b, &mut data);
                        writeln!(
                            body,
                            "    (if (i32.ne (local.get $r) (i32.const {len})) (then (call $exit (i32.const {l}))))\n    (if (i32.eqz (call $eq (i32.const {OUT}) (i32.const {exp}) (i32.const {len}))) (then (call $exit (i32.const {w}))))",
                            len = b.len(),
                            l = 100 + n,
                            w = 200 + n
                        )
                    }
                }
                .unwrap();
            }
            Step::Detail(expected) => {
                let exp = place(expected, &mut data);
                writeln!(
                    body,
                    "    (local.set $r (call $result_take (i32.const {OUT}) (i32.const {OUT_CAP})))\n    (if (i32.ne (local.get $r) (i32.const {len})) (then (call $exit (i32.const {l}))))\n    (if (i32.eqz (call $eq (i32.const {OUT}) (i32.const {exp}) (i32.const {len}))) (then (call $exit (i32.const {w}))))",
                    len = expected.len(),
                    l = 100 + n,
                    w = 200 + n
                )
                .unwrap();
            }
            Step::Wait(ms) => writeln!(
                body,
                "    (local.set $t (i64.add (call $now) (i64.const {ms})))\n    (block $w{n} (loop $l{n} (br_if $w{n} (i64.ge_s (call $now) (local.get $t))) (br $l{n})))"
            )
            .unwrap(),
        }
    }
    let m = abi::MODULE;
    let wat = format!(
        r#"(module
  (import "{m}" "infer" (func $infer (param i32 i32 i32 i32) (result i32)))
  (import "{m}" "tool_call" (func $tool_call (param i32 i32 i32 i32) (result i32)))
  (import "{m}" "data_read" (func $data_read (param i32 i32 i32 i32) (result i32)))
  (import "{m}" "log" (func $log (param i32 i32 i32 i32) (result i32)))
  (import "{m}" "now" (func $now (result i64)))
  (import "{m}" "result_take" (func $result_take (param i32 i32) (result i32)))
  (import "{m}" "exit" (func $exit (param i32)))
  (memory (export "memory") 3)
{data}
{EQ_FUNC}
  (func (export "run") (local $r i32) (local $t i64)
{body}
    (call $exit (i32.const 0))))"#
    );
    wat::parse_str(&wat).unwrap_or_else(|e| panic!("{e}\n{wat}"))
}

/// `v` in the agent ABI's encoding (postcard), as a request or an expected response.
pub fn postcard<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut buf = vec![0u8; abi::MAX_RESPONSE + 64];
    abi::encode(v, &mut buf).unwrap().to_vec()
}
