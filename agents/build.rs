//! Links every wasm32 agent with a 32 KiB stack (Rust's wasm default is 1 MiB): stack and
//! static data then fit in the first 64 KiB page, so an idle agent's memory is a page or two
//! plus its live heap.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo::rustc-link-arg-bins=-zstack-size=32768");
    }
}
