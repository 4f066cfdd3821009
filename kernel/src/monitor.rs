//! The boot sequence, one flow for every platform, and the state it leaves: [`Monitor`].
//! The services and the test hooks take what they need from it; it depends on neither.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use omega_arch::{serial, serial_println};
use omega_boot_info::{BootInfo, PhysRange, Tee};
use omega_kernel::attest::BOOT_ID_LEN;
use omega_kernel::clock::Clock;
use omega_kernel::entropy;
use omega_kernel::frames::FrameAllocator;
use omega_kernel::platform::{NoTee, Platform};

use crate::hw::{self, cpu, heap, shared_pool, snp};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Reports a condition the monitor cannot recover from (a local one: no memory, a broken
/// boot info, no entropy for the log key; never something the host sent on the channel)
/// and stops the VM (`omega_arch::fatal`).
pub fn fatal(what: &str, err: impl core::fmt::Display) -> ! {
    omega_arch::fatal::fatal("omega", what, err)
}

/// What the monitor owns once booted.
pub struct Monitor {
    pub info: &'static BootInfo,
    /// The platform the monitor runs on (`tee`); borrowed mutably for guest requests.
    pub platform: RefCell<Box<dyn Platform>>,
    pub tee: Tee,
    pub frames: FrameAllocator,
    /// The pages shared with the host for DMA.
    pub shared: PhysRange,
    pub clock: Option<Clock>,
    /// Secrets drawn at boot; `None` without entropy.
    pub keys: Option<BootKeys>,
}

/// What the monitor draws from the hardware RNG at boot (private memory only).
pub struct BootKeys {
    /// This boot's random id: the log's checkpoint origin and the evidence name it.
    pub boot_id: [u8; BOOT_ID_LEN],
    /// The provenance log's signing seed.
    pub log_key: Box<[u8; 32]>,
    /// The evidence issuer's signing seed (the monitor key in REPORT_DATA); never the log
    /// key, so neither signature can stand in for the other.
    pub evidence_key: Box<[u8; 32]>,
    /// The A2A agent-card signing seed (`attest::cards`): a third key, so a card signature
    /// stands for nothing else.
    pub card_key: Box<[u8; 32]>,
    /// The peer-channel signing seed (`omega-peer-channel`, the evidence's `PeerKey`
    /// claim): a fourth key, so a channel handshake signature stands for nothing else.
    pub peer_key: Box<[u8; 32]>,
    /// The fleet coordinator's signing seed (`services::coordinator`, the evidence's
    /// `Coordinator` claim; used only when the bundle makes this image a coordinator): a
    /// fifth key, so a placement or credential signature stands for nothing else.
    pub coordinator_key: Box<[u8; 32]>,
}

impl BootKeys {
    fn draw(rng: &mut hw::entropy::CpuRng) -> Result<Self, entropy::EntropyError> {
        let mut keys = BootKeys {
            boot_id: [0; BOOT_ID_LEN],
            log_key: Box::new([0; 32]),
            evidence_key: Box::new([0; 32]),
            card_key: Box::new([0; 32]),
            peer_key: Box::new([0; 32]),
            coordinator_key: Box::new([0; 32]),
        };
        entropy::fill(rng, &mut keys.boot_id)?;
        entropy::fill(rng, keys.log_key.as_mut_slice())?;
        entropy::fill(rng, keys.evidence_key.as_mut_slice())?;
        entropy::fill(rng, keys.card_key.as_mut_slice())?;
        entropy::fill(rng, keys.peer_key.as_mut_slice())?;
        entropy::fill(rng, keys.coordinator_key.as_mut_slice())?;
        Ok(keys)
    }
}

/// A SHA-256 digest on the console: its first 8 bytes in hex, then `...`.
pub struct DigestPrefix<'a>(pub &'a [u8; 32]);

impl core::fmt::Display for DigestPrefix<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("...")
    }
}

/// Brings the machine up from the loader's boot info: CPU tables, platform, heap, frames,
/// shared DMA pool, clock and entropy; prints the banner.
pub fn boot(info: &'static BootInfo) -> Monitor {
    // Under SNP the console's port I/O needs the #VC handler (IDT) and its GHCB first; the
    // console stays off until both are there.
    let snp_guest = info.check() == Ok(Tee::SevSnp);
    serial::set_enabled(!snp_guest);
    if snp_guest {
        // SECURITY: silent before the IDT exists, so an exception the host injects while the
        // CPU tables are set up discloses nothing either.
        omega_arch::fatal::set_snp_guest();
    }
    cpu::init();
    if snp_guest {
        snp::init_vc(info);
        serial::set_enabled(true);
    }
    serial::init();
    let tee = info
        .check()
        .unwrap_or_else(|e| fatal("boot info from the loader", format_args!("{e:?}")));
    let heap_range = heap::choose(info).unwrap_or_else(|| fatal("heap", "no free RAM"));
    // The platform comes first: under SNP the heap's RAM must be validated before use.
    let (mut platform, heap): (Box<dyn Platform>, _) = match tee {
        Tee::None => {
            let heap = heap::init(heap_range);
            (Box::new(NoTee), heap)
        }
        Tee::SevSnp => {
            let mut p = snp::SevSnp::new(info).unwrap_or_else(|e| fatal("SEV-SNP platform", e));
            p.accept_memory(heap_range)
                .unwrap_or_else(|e| fatal("accepting the heap's memory", e));
            let heap = heap::init(heap_range);
            (Box::new(p), heap)
        }
        // The reset code refuses these; BootInfo::check does too.
        other => fatal(
            "platform",
            format_args!("{} is not supported", other.name()),
        ),
    };
    let mut frames = FrameAllocator::from_boot_info(info, &[heap_range])
        .unwrap_or_else(|e| fatal("frame allocator", e));
    for r in frames.ranges() {
        platform
            .accept_memory(*r)
            .unwrap_or_else(|e| fatal("accepting memory", e));
    }
    let shared = shared_pool::init(&mut frames, platform.as_mut())
        .unwrap_or_else(|e| fatal("shared DMA pool", e));
    let (clock, clock_err) = match hw::clock::calibrate() {
        Ok(c) => (Some(c), None),
        Err(e) => (None, Some(e)),
    };
    let mut cpu_rng = hw::entropy::CpuRng::detect();
    let keys = BootKeys::draw(&mut cpu_rng).ok();

    let m = Monitor {
        info,
        tee: platform.tee(),
        platform: RefCell::new(platform),
        frames,
        shared,
        clock,
        keys,
    };
    banner(&m, &heap, &cpu_rng, clock_err);
    heap_self_test();
    m
}

fn banner(m: &Monitor, heap: &heap::HeapInfo, rng: &hw::entropy::CpuRng, clock_err: Option<&str>) {
    let info = m.info;
    let tee = m.tee;
    serial_println!("==============================================================");
    serial_println!(" Omega monitor {VERSION}");
    serial_println!(" tee: {}", tee.name());
    serial_println!(
        " memory: {} MiB usable in {} e820 entries",
        info.usable_ram() >> 20,
        info.e820().len()
    );
    serial_println!(
        " heap: {} MiB at phys {:#x}",
        heap.size >> 20,
        heap.phys_start
    );
    serial_println!(
        " frames: {} MiB free; shared DMA pool {} KiB at {:#x}",
        m.frames.free_bytes() >> 20,
        (m.shared.end - m.shared.start) >> 10,
        m.shared.start
    );
    match (&m.clock, clock_err) {
        (Some(c), _) => serial_println!(
            " clock: TSC {}.{:03} MHz (PIT-calibrated)",
            c.hz() / 1_000_000,
            c.hz() / 1000 % 1000
        ),
        (None, err) => serial_println!(" clock: {}", err.unwrap_or("unavailable")),
    }
    match &m.keys {
        Some(k) => serial_println!(
            " entropy: {}; log key generated, evidence key generated, boot id {}",
            rng.describe(),
            omega_kernel::attest::boot_id_hex(&k.boot_id)
        ),
        None => serial_println!(
            " entropy: {} - UNAVAILABLE: no keys can be made, agents will not start",
            rng.describe()
        ),
    }
    serial_println!(" kernel sha256: {}", DigestPrefix(&info.kernel_sha256));
    if tee == Tee::None {
        serial_println!(
            " WARNING: no TEE; this run is unattested and verifiers refuse it by default"
        );
    }
    serial_println!("==============================================================");
}

/// A quick check that the allocator works before anything relies on it.
fn heap_self_test() {
    let before = heap::free();
    {
        let v: Vec<u64> = (0..10_000).collect();
        let mut m = BTreeMap::new();
        for i in 0..1000u32 {
            m.insert(i, String::from("omega"));
        }
        let sum: u64 = v.iter().sum();
        if sum != 49_995_000 || m.len() != 1000 {
            fatal("heap self-test", "computed wrong values");
        }
    }
    if heap::free() != before {
        fatal(
            "heap self-test",
            format_args!("leaked {} bytes", before - heap::free()),
        );
    }
    serial_println!("omega: heap self-test passed");
}
