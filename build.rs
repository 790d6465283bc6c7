//! Link options for the `meshscope` binary.
//!
//! On GNU/Linux the binary is linked with its relative relocations packed (`DT_RELR`, `-z
//! pack-relative-relocs`). A position-independent Rust binary of this size carries about a
//! quarter of a million of them, 6 MB in the usual form, which the dynamic loader reads at
//! every start and which then stay resident: packed, they take 70 KB, and an idle server's
//! RSS falls by about 7 MB (BENCHMARKS.md, "Idle memory"). The binary stays
//! position-independent. A linker too old for the option ignores it with a warning; a
//! binary linked against glibc 2.36 or later with it needs glibc 2.36 or later to run.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo::rerun-if-changed=build.rs");
}
