//! Link options of the `sozu` binaries.
//!
//! On Linux with glibc, the relative relocations (one per pointer in the binary's data: vtables,
//! static tables of strings…), which the loader applies at each start in the main process and
//! in every worker, are packed (`DT_RELR`, glibc 2.36): 18,000 entries of 24 bytes, 438 KiB
//! read into each process's memory at start, become a few KiB of bitmaps. The option is given
//! only when the C toolchain links a program with it (binutils 2.38 and glibc 2.36 or later).

use std::{env, fs, path::PathBuf, process::Command};

const PACK: &str = "-Wl,-z,pack-relative-relocs";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let environment = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && environment == "gnu" && toolchain_packs() {
        println!("cargo:rustc-link-arg-bins={PACK}");
    }
}

/// Whether the C compiler, which rustc links with, links a program with packed relocations.
fn toolchain_packs() -> bool {
    let Some(out) = env::var_os("OUT_DIR").map(PathBuf::from) else {
        return false;
    };
    let source = out.join("relr.c");
    if fs::write(&source, "int main(void) { return 0; }\n").is_err() {
        return false;
    }
    let compiler = env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let linked = Command::new(compiler)
        .arg(&source)
        .arg("-o")
        .arg(out.join("relr"))
        .arg(PACK)
        .output()
        .is_ok_and(|output| output.status.success());
    if !linked {
        println!("cargo:warning=the C toolchain does not link with {PACK}: relocations not packed");
    }
    linked
}
