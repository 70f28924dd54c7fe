//! Link options of the `sozu` binaries.
//!
//! On Linux with glibc, the relative relocations (one per pointer in the binary's data: vtables,
//! static tables of strings…), which the loader applies at each start in the main process and
//! in every worker, are packed (`DT_RELR`, glibc 2.36): 18,000 entries of 24 bytes, 438 KiB
//! read into each process's memory at start, become a few KiB of bitmaps.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let environment = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && environment == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
