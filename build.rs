//! Link options of the `sluice` binary.
//!
//! On Linux with glibc, Rust's standard library links the unwinder as the
//! shared `libgcc_s.so.1`. Loading it costs every process about 0.1 ms on
//! the 2-core VM of BENCHMARKS.md: one more object for the loader to open,
//! map and relocate, and a constructor (`__cpu_indicator_init`) that runs a
//! dozen CPUID instructions, each a trap to the hypervisor. That is a
//! twentieth of a `sluice query` for a rare id. So `-lgcc_s` is pointed at
//! a linker script that names the static unwinder `libgcc_eh.a` instead,
//! the one a `crt-static` build links: the same unwinder (panics unwind,
//! `catch_unwind` catches, backtraces print), linked in, and one shared
//! library fewer for the binary to need. Set `SLUICE_SHARED_UNWINDER=1` at
//! build time to link the shared one. The release binary of
//! `scripts/build-release` is `crt-static`, which links `libgcc_eh.a`
//! itself, so there is nothing to redirect.

use std::path::PathBuf;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=SLUICE_SHARED_UNWINDER");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let shared_wanted = std::env::var_os("SLUICE_SHARED_UNWINDER").is_some_and(|v| v != "0");
    let linux_gnu = var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu";
    let crt_static = var("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|f| f == "crt-static");
    if !linux_gnu || shared_wanted || crt_static {
        return;
    }
    // The linker searches `-L` directories before its own, so this
    // `libgcc_s.so` is found first; `-lgcc_eh` then resolves in the
    // compiler's library directory, where it always sits beside libgcc.
    let dir = PathBuf::from(var("OUT_DIR")).join("static-unwinder");
    std::fs::create_dir_all(&dir).expect("create the unwinder's linker script directory");
    std::fs::write(dir.join("libgcc_s.so"), "INPUT(-lgcc_eh)\n")
        .expect("write the unwinder's linker script");
    println!("cargo::rustc-link-search=native={}", dir.display());
}
