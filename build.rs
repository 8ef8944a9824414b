//! Link options of the `sluice` binary.
//!
//! On Linux with glibc the binary is linked as a position-dependent
//! executable (`-no-pie`). A position-independent one carries about 30,000
//! relative relocations (vtables, the regex engine's Unicode tables) that
//! the dynamic loader applies at every start, copying some 120 pages on
//! write to do it: 0.4 ms of each start. `sluice --version` took 1.7 ms
//! against 1.3, a query for a rare id 3.2 against 2.8 (medians of best of
//! 3). The code is still compiled position-independent; only the
//! executable's load address is fixed, as it is for Go's binaries (OK Log's
//! among them). Set `SLUICE_PIE=1` at build time to link a PIE, for a
//! policy that needs one.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=SLUICE_PIE");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let pie_wanted = std::env::var_os("SLUICE_PIE").is_some_and(|v| v != "0");
    let linux_gnu = var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu";
    if linux_gnu && !pie_wanted {
        println!("cargo::rustc-link-arg-bins=-no-pie");
    }
}
