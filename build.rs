//! Link options for the programs (`batond`, `baton`, `baton-emulator`); the library and the
//! tests are linked as Cargo does by default.
//!
//! On GNU/Linux, relative relocations are packed (`-z pack-relative-relocs`, DT_RELR): a
//! position-independent binary otherwise carries one 24-byte `.rela.dyn` entry per pointer in
//! its read-only data (17,872 in `batond`, 422 KB that the dynamic loader reads at every start,
//! and that stay resident), where DT_RELR needs a few kilobytes of bitmaps. The binary stays
//! position-independent (ASLR unchanged). It needs glibc 2.36 or later at run time, which
//! `dpkg-shlibdeps` records in the package's `Depends` (symbol `GLIBC_ABI_DT_RELR`), and GNU ld
//! 2.38 or lld 15 to link. docs/PERFORMANCE.md, "Where batond's idle memory goes", has the
//! measurement.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
