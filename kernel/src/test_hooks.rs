//! Fault injection and self-checks for the QEMU tests, chosen by `test=` on the command
//! line (`-fw_cfg name=opt/omega/cmdline,string=test=panic`). Only in images built with
//! the `test-hooks` feature: the production image has none of this. Depends on the monitor's
//! state and the hardware glue; nothing depends on it.

use alloc::vec::Vec;

use omega_arch::exit::{ExitCode, exit};
use omega_arch::serial_println;
use omega_boot_info::virt;

use crate::hw::{clock, heap, shared_pool, virtio};
use crate::monitor::{Monitor, fatal};

/// Runs the hook `test=` names; returns true if the channel should echo every stream.
pub fn run(m: &Monitor) -> bool {
    let Some(test) = m
        .info
        .cmdline()
        .split_whitespace()
        .find_map(|w| w.strip_prefix("test="))
    else {
        return false;
    };
    serial_println!("omega: test hook: {test}");
    match test {
        "panic" => panic!("test hook asked for a panic"),
        "pagefault" => {
            // The guard page under the boot stack.
            let guard = (virt::KERNEL_STACK_TOP - virt::KERNEL_STACK_SIZE - 8) as *const u64;
            // SAFETY: the guard page is never mapped, so the read faults before it produces a
            // value; the page-fault handler reports and stops the VM (what the test checks).
            let v = unsafe { core::ptr::read_volatile(guard) };
            serial_println!("omega: read {v:#x} from the guard page?!");
        }
        "stack-overflow" => {
            serial_println!("omega: recursing until the stack runs into its guard page");
            let depth = recurse(0);
            serial_println!("omega: recursion returned {depth}?!");
        }
        "ud" => {
            // SAFETY: `ud2` touches no memory; it raises #UD, whose handler reports and stops
            // the VM (what the test checks).
            unsafe { core::arch::asm!("ud2") };
        }
        "write-code" => {
            // W^X: kernel code is mapped read-only.
            let code = run as *const () as *mut u8;
            // SAFETY: kernel text is mapped read-only (W^X), so the write faults before it
            // changes anything; the page-fault handler reports and stops the VM.
            unsafe { core::ptr::write_volatile(code, 0xcc) };
            serial_println!("omega: wrote to kernel code?!");
        }
        "heap-stress" => heap_stress(),
        "clock" => clock(m),
        "memdump" => memdump(m),
        "virtio-echo" => virtio_echo(),
        "vc-cpuid" => vc_cpuid(),
        "echo-all" => return true,
        other => serial_println!("omega: unknown test hook {other:?}"),
    }
    false
}

#[inline(never)]
#[allow(
    unconditional_recursion,
    reason = "runs into the guard page on purpose"
)]
fn recurse(n: u64) -> u64 {
    let pad = [n; 64];
    core::hint::black_box(&pad);
    recurse(n + 1) + pad[3]
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// Random allocation patterns (small/large, aligned, interleaved frees); every block is
/// filled with a pattern derived from its id and checked before it is freed.
fn heap_stress() {
    let before = heap::free();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut live: Vec<(u64, Vec<u8>)> = Vec::new();
    let (mut ops, mut peak) = (0u64, 0usize);
    for id in 0..40_000u64 {
        let r = xorshift(&mut seed);
        if (!r.is_multiple_of(3) && live.len() < 1500) || live.is_empty() {
            let size = match r % 10 {
                0 => (r >> 20) as usize % (256 << 10),
                1..=3 => (r >> 20) as usize % 4096,
                _ => (r >> 20) as usize % 128,
            };
            let v: Vec<u8> = (0..size).map(|i| (id as u8) ^ (i as u8)).collect();
            live.push((id, v));
        } else {
            let (id, v) = live.swap_remove((r >> 8) as usize % live.len());
            if !v
                .iter()
                .enumerate()
                .all(|(i, b)| *b == (id as u8) ^ (i as u8))
            {
                serial_println!("omega: heap stress: block {id} corrupted");
                exit(ExitCode::Failure);
            }
        }
        ops += 1;
        peak = peak.max(before - heap::free());
    }
    drop(live);
    let after = heap::free();
    if after != before {
        serial_println!("omega: heap stress: {} bytes not returned", before - after);
        exit(ExitCode::Failure);
    }
    serial_println!(
        "omega: heap stress passed: {ops} operations, peak {} KiB in use",
        peak >> 10
    );
}

/// Monotonicity over many readings, and the TSC clock against the PIT over 50 ms.
fn clock(m: &Monitor) {
    let Some(c) = m.clock.as_ref() else {
        serial_println!("omega: clock test: no clock");
        exit(ExitCode::Failure);
    };
    let mut last = clock::now_ns(c);
    for _ in 0..100_000 {
        let t = clock::now_ns(c);
        if t < last {
            serial_println!("omega: clock went backwards: {t} < {last}");
            exit(ExitCode::Failure);
        }
        last = t;
    }
    let tsc = clock::pit_wait_tsc(50).unwrap_or(0);
    let measured_us = tsc as u128 * 1_000_000 / c.hz() as u128;
    serial_println!(
        "omega: clock monotonic over 100000 readings; 50 ms of PIT = {measured_us} us of TSC"
    );
}

/// Leaves a known secret in private memory, fills the shared pool with DMA-like data and
/// waits for the host to dump memory.
fn memdump(m: &Monitor) {
    let Some(key) = m.keys.as_ref().map(|k| &k.log_key) else {
        serial_println!("omega: memdump test: no log key (no entropy)");
        exit(ExitCode::Failure);
    };
    let mut hex = [0u8; 64];
    for (i, b) in key.iter().enumerate() {
        const H: &[u8; 16] = b"0123456789abcdef";
        hex[2 * i] = H[usize::from(b >> 4)];
        hex[2 * i + 1] = H[usize::from(b & 15)];
    }
    let (pa, ptr) = shared_pool::alloc(16).expect("shared pool has room");
    // SAFETY: `alloc` handed out these 16 pages (64 KiB, mapped RW in the direct map) to
    // this function alone, and nothing frees them: the VM halts below.
    let buf = unsafe { core::slice::from_raw_parts_mut(ptr.as_ptr(), 16 * 4096) };
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31);
    }
    serial_println!(
        "omega: memdump secret={}",
        core::str::from_utf8(&hex).unwrap()
    );
    serial_println!(
        "omega: memdump shared={:#x}-{:#x} buffer={pa:#x}",
        m.shared.start,
        m.shared.end
    );
    serial_println!("omega: memdump ready");
    omega_arch::exit::halt_forever()
}

/// Echoes every byte from the virtio console back, forever (the test kills QEMU).
fn virtio_echo() {
    let mut console = match virtio::probe() {
        Ok(c) => c,
        Err(e) => {
            serial_println!("omega: virtio console: {e}");
            exit(ExitCode::Failure);
        }
    };
    serial_println!("omega: virtio console ready (mmio slot {})", console.slot);
    let mut buf = alloc::vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        match console.recv(&mut buf) {
            Ok(0) => core::hint::spin_loop(),
            Ok(n) => {
                total += n as u64;
                if let Err(e) = console.send(&buf[..n]) {
                    serial_println!("omega: virtio send: {e}");
                }
            }
            Err(e) => serial_println!("omega: virtio receive error after {total} bytes: {e}"),
        }
    }
}

/// A #VC for CPUID, which TCG never raises, synthesized with the frame the hardware pushes
/// (error code 0x72): runs the resumable stub, the instruction fetch at RIP, the decoder,
/// the answer from a CPUID table and the return past the instruction. The table is built
/// here (one leaf, marker values), since there is no CPUID page without SNP.
fn vc_cpuid() {
    let mut page = [0u8; 4096];
    page[0..4].copy_from_slice(&1u32.to_le_bytes());
    let entry = &mut page[0x10..0x40];
    // Leaf 0, sub-leaf 0: max standard leaf 0, vendor registers "OmegaVCtest!".
    entry[0x18..0x1c].copy_from_slice(&0u32.to_le_bytes());
    entry[0x1c..0x20].copy_from_slice(b"Omeg");
    entry[0x24..0x28].copy_from_slice(b"aVCt");
    entry[0x20..0x24].copy_from_slice(b"est!");
    let table = sev_snp::cpuid_page::CpuidTable::parse(&page)
        .unwrap_or_else(|e| fatal("vc-cpuid table", e));
    omega_arch::sev::vc_init(table);
    let (a, b, c, d): (u32, u32, u32, u32);
    // SAFETY: builds exactly the frame a #VC pushes (SS, RSP, RFLAGS, CS, RIP, error code)
    // on a 16-byte aligned stack and enters the #VC stub, which emulates the CPUID at
    // label 3 and returns past it with the original RSP; RBX is saved around it for LLVM.
    unsafe {
        core::arch::asm!(
            "push rbx",
            "mov r11, rsp",
            "and rsp, -16",
            "mov r10, ss",
            "push r10",
            "push r11",
            "pushfq",
            "mov r10, cs",
            "push r10",
            "lea r10, [rip + 3f]",
            "push r10",
            "push 0x72",
            "xor eax, eax",
            "xor ecx, ecx",
            "jmp omega_isr_29",
            "3:",
            "cpuid",
            "mov {b:e}, ebx",
            "pop rbx",
            b = out(reg) b,
            out("eax") a,
            out("ecx") c,
            out("edx") d,
            out("r10") _,
            out("r11") _,
        );
    }
    let vendor: [u8; 12] = {
        let mut v = [0; 12];
        v[0..4].copy_from_slice(&b.to_le_bytes());
        v[4..8].copy_from_slice(&d.to_le_bytes());
        v[8..12].copy_from_slice(&c.to_le_bytes());
        v
    };
    serial_println!(
        "omega: vc-cpuid: eax={a:#x} vendor={:?}",
        core::str::from_utf8(&vendor).unwrap_or("?")
    );
}
