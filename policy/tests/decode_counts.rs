//! Counts in the input are checked before anything is reserved for them: a few bytes that
//! declare a huge sequence (at any nesting level) are refused at once, and decoding them
//! never allocates more than a little. A counting global allocator measures the peak.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use omega_policy::{DecodeError, FORMAT_VERSION, MAGIC, decode};

struct Peak;

thread_local! {
    // Per thread: the test harness runs tests in parallel, and only the measuring thread's
    // allocations count (a const-initialised Cell needs no allocation to reach).
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

fn armed() -> bool {
    ARMED.try_with(Cell::get).unwrap_or(false)
}
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only tracks sizes while armed.
unsafe impl GlobalAlloc for Peak {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if armed() {
            let now = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(now, Ordering::SeqCst);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if armed() {
            // Memory allocated before arming may be freed while armed: never wrap below 0.
            let _ = LIVE.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| {
                Some(l.saturating_sub(layout.size()))
            });
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Peak = Peak;

/// Decodes `blob` and returns the result's error and the peak bytes allocated meanwhile.
fn decode_measured(blob: &[u8]) -> (Option<DecodeError>, usize, Duration) {
    LIVE.store(0, Ordering::SeqCst);
    PEAK.store(0, Ordering::SeqCst);
    let t = Instant::now();
    ARMED.set(true);
    let err = decode(blob).err();
    ARMED.set(false);
    (err, PEAK.load(Ordering::SeqCst), t.elapsed())
}

/// u32::MAX as a postcard varint.
const HUGE: [u8; 5] = [0xff, 0xff, 0xff, 0xff, 0x0f];

fn blob(body: &[u8]) -> Vec<u8> {
    let mut b = MAGIC.to_vec();
    b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    b.extend_from_slice(body);
    b
}

/// Every sequence of the format, declared with `count` elements and nothing after.
fn declared(count: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let name = [1, b'p'];
    let mut cases = Vec::new();
    // The policy's seven top-level sequences, the earlier ones empty.
    for (i, what) in [
        "labels", "agents", "tools", "models", "sources", "rules", "limits",
    ]
    .into_iter()
    .enumerate()
    {
        let mut b = name.to_vec();
        b.extend(std::iter::repeat_n(0u8, i));
        b.extend_from_slice(count);
        cases.push((what, blob(&b)));
    }
    // One `call` rule: name, effect Allow, action Call, any target, every agent.
    let mut rule = name.to_vec();
    rule.extend_from_slice(&[0, 0, 0, 0, 0, 1, 1, b'r', 0, 1, 0, 0]);
    let mut constraints = rule.clone();
    constraints.extend_from_slice(count);
    cases.push(("constraints", blob(&constraints)));
    // One constraint `arg a in [...]` with the set's count.
    for (what, variant) in [("Ints", 3u8), ("Strs", 4u8)] {
        let mut b = rule.clone();
        b.extend_from_slice(&[1, 0, 1, b'a', 7, variant]);
        b.extend_from_slice(count);
        cases.push((what, blob(&b)));
    }
    cases
}

#[test]
fn huge_declared_counts_are_refused_before_allocating() {
    let mut counts = vec![HUGE.to_vec()];
    // Within every limit, but far more than the input holds.
    counts.push(vec![0x80, 0x20]); // 4096
    counts.push(vec![0x80, 0x02]); // 256
    counts.push(vec![64]);
    for count in &counts {
        for (what, b) in declared(count) {
            let (err, peak, took) = decode_measured(&b);
            assert!(
                err.is_some(),
                "{what} {count:x?}: a truncated policy decoded"
            );
            // serde's Vec would reserve up to 1 MiB for the count alone.
            assert!(
                peak <= 1024,
                "{what} {count:x?}: {peak} bytes allocated for a {} byte input",
                b.len()
            );
            assert!(took < Duration::from_millis(100), "{what}: {took:?}");
        }
    }
}

/// The cases above are refused for their counts, not for a mistake in the hand-made bytes:
/// with the count of a real policy each is a prefix of that policy's encoding.
#[test]
fn the_hand_made_prefixes_are_those_of_a_real_policy() {
    use omega_policy::{Constraint, Effect, Lit, Op, Policy, Rule, RuleAction, Subject, encode};
    let policy = |value| Policy {
        name: "p",
        labels: vec![],
        agents: vec![],
        tools: vec![],
        models: vec![],
        sources: vec![],
        rules: vec![Rule {
            name: "r",
            effect: Effect::Allow,
            action: RuleAction::Call,
            target: None,
            agents: None,
            constraints: vec![Constraint {
                subject: Subject::Arg("a"),
                op: Op::In,
                value,
            }],
            declassify: 0,
        }],
        limits: vec![],
        gpu: vec![],
    };
    let ints = encode(&policy(Lit::Ints(vec![5]))).unwrap();
    let strs = encode(&policy(Lit::Strs(vec!["x"]))).unwrap();
    decode(&ints).unwrap();
    let one = declared(&[1]);
    let prefix = |what: &str| &one.iter().find(|(w, _)| *w == what).unwrap().1;
    assert!(strs.starts_with(prefix("rules")));
    assert!(strs.starts_with(prefix("constraints")));
    assert!(ints.starts_with(prefix("Ints")));
    assert!(strs.starts_with(prefix("Strs")));
    let empty = blob(&[1, b'p', 0, 0, 0, 0, 0, 0, 0]);
    decode(&empty).expect("the empty policy");
    for (what, b) in declared(&[0]).into_iter().take(7) {
        assert!(empty.starts_with(&b), "{what}");
    }
}
