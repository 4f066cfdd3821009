//! Agent runtime figures: instantiation time, memory per idle agent, message round trip.
//!
//! `cargo bench -p omega-runtime --bench agents` (custom harness; `-- --quick` for fewer
//! samples). Memory is counted by a global allocator: every byte the runtime holds for an
//! agent (store, instance, linear memory, parked call stack, session, inbox).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use common::{idle_agent, ping_pong_agent, wasm};
use omega_runtime::Status;
use support::{percentile, spec};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn instantiate_and_memory(n: usize, pages: u32) {
    let module = wasm(&idle_agent(pages));
    let mut rt = support::runtime(&[("idle", &module, 0)]);
    let checked = rt
        .check(&spec("idle", &module))
        .expect("idle agent passes the checks");
    // Warm up the engine's caches once.
    let _ = rt.spawn(checked.clone()).unwrap();
    rt.run_until_idle(10);

    let before = LIVE.load(Ordering::Relaxed);
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let c = checked.clone();
        let t = Instant::now();
        rt.spawn(c).unwrap();
        times.push(t.elapsed());
    }
    // Run each once so it parks in `recv`: the idle state holds its suspended call.
    rt.run_until_idle(n * 2);
    let after = LIVE.load(Ordering::Relaxed);
    assert!(
        (1..=n).all(|i| rt.status(omega_runtime::AgentId(i)) == Some(&Status::Parked)),
        "every agent is parked in recv"
    );
    times.sort();
    let per_agent = (after - before) as f64 / n as f64;
    println!(
        "instantiate ({pages} page{} of linear memory): p50 {:.1} µs, p99 {:.1} µs over {n}",
        if pages == 1 { "" } else { "s" },
        percentile(&times, 0.5).as_secs_f64() * 1e6,
        percentile(&times, 0.99).as_secs_f64() * 1e6,
    );
    let linear = f64::from(pages) * 64.0;
    println!(
        "idle agent memory ({n} agents parked in recv): {:.1} KiB each ({linear:.0} KiB linear memory + {:.1} KiB runtime) -> {} agents per GiB",
        per_agent / 1024.0,
        per_agent / 1024.0 - linear,
        (1u64 << 30) / per_agent as u64
    );
}

fn round_trip(rounds: u32, payload: &str, spinners: usize) -> f64 {
    let ping = wasm(&ping_pong_agent("pong", rounds, true, payload));
    let pong = wasm(&ping_pong_agent("ping", rounds, false, payload));
    let spinner = wasm(common::SPINNER);
    let mut rt = support::runtime(&[
        ("ping", &ping, 0b111),
        ("pong", &pong, 0b111),
        ("spinner", &spinner, 0),
    ]);
    let a = rt.load(&spec("ping", &ping)).unwrap();
    let b = rt.load(&spec("pong", &pong)).unwrap();
    for _ in 0..spinners {
        rt.load(&spec("spinner", &spinner)).unwrap();
    }
    let t = Instant::now();
    let mut spinner_slices = 0u64;
    while rt.status(a) != Some(&Status::Exited(0)) {
        if rt.run_slice().is_some_and(|id| id != a && id != b) {
            spinner_slices += 1;
        }
    }

    let elapsed = t.elapsed();
    assert_eq!(rt.status(a), Some(&Status::Exited(0)));
    assert_eq!(rt.status(b), Some(&Status::Exited(0)));
    assert!(
        rt.monitor().records() >= 2 * u64::from(rounds),
        "a decision record each way"
    );
    let rtt = elapsed.as_secs_f64() * 1e6 / f64::from(rounds);
    println!(
        "message round trip ({} B payload, policy + record + copy each way), {spinners} spinning agents: {rtt:.2} µs ({rounds} rounds, {spinner_slices} spinner slices)",
        payload.len(),
    );
    rtt
}

fn main() {
    let (n, rounds) = if support::quick() {
        (200, 2_000)
    } else {
        (2_000, 100_000)
    };
    instantiate_and_memory(n, 1);
    instantiate_and_memory(n, 4);
    let payload = "x".repeat(64);
    let solo = round_trip(rounds, &payload, 0);
    let loaded = round_trip(rounds / 2, &payload, 100);
    println!(
        "fairness: with 100 spinners the pair keeps {:.1} % of its solo message rate",
        100.0 * solo / loaded
    );
}
