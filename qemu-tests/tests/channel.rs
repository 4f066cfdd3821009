//! The host channel's transport: the guest's virtio console (virtio-mmio, bounce buffers
//! through the shared pool) echoes bytes over QEMU's unix-socket chardev.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use qemu_tests::{Boot, test_hooks_image};

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(151).wrapping_add(seed) ^ (i >> 8) as u8).collect()
}

#[test]
fn raw_virtio_console_echoes_1_byte_to_1_mib() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("channel.sock");
    let mut vm = Boot::new(test_hooks_image())
        .cmdline("test=virtio-echo")
        .timeout(Duration::from_secs(120))
        .virtio_console(&sock)
        .spawn()
        .unwrap();
    assert!(vm.wait_for("omega: virtio console ready", Duration::from_secs(60)), "{}", vm.serial());
    let stream = UnixStream::connect(&sock).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    for (i, size) in [1usize, 2, 100, 4095, 4096, 4097, 65_536, 300_000, 1 << 20].into_iter().enumerate() {
        let data = pattern(size, i as u8);
        let mut writer = stream.try_clone().unwrap();
        let sent = data.clone();
        let t = Instant::now();
        let w = std::thread::spawn(move || writer.write_all(&sent).unwrap());
        let mut got = vec![0u8; size];
        (&stream).read_exact(&mut got).unwrap_or_else(|e| panic!("size {size}: {e}\n{}", vm.serial()));
        w.join().unwrap();
        assert!(got == data, "size {size}: echo differs");
        eprintln!("echo {size} bytes: {:?}", t.elapsed());
    }
    let out = vm.kill().unwrap();
    assert!(!out.serial.contains("receive error"), "{out}");
}
