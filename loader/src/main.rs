//! The loader binary. On the bare-metal target it is the image's reset code and 64-bit
//! loader (see `boot.rs`); built for the host it only explains itself, so that
//! `cargo test --workspace` can build every package.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod boot;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "omega-loader runs only inside the boot image (target x86_64-unknown-none); build it with image-build"
    );
    std::process::exit(2);
}
