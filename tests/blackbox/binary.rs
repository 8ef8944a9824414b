//! The built binary itself: how it is linked (see `build.rs`).

use std::process::Command;

use crate::harness::BIN;

/// On Linux with glibc the unwinder is linked into the binary
/// (`libgcc_eh.a`), so the loader does not open `libgcc_s.so.1` at every
/// start: that library and its CPU-detecting constructor took 0.1 ms of
/// each `sluice query`. A build with `SLUICE_SHARED_UNWINDER` set links the
/// shared one on purpose. The listing is the loader's own (what `ldd`
/// prints), so it names what a start really loads.
#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn the_binary_does_not_load_the_shared_unwinder_at_start() {
    let out = Command::new(BIN)
        .env("LD_TRACE_LOADED_OBJECTS", "1")
        .output()
        .expect("run the sluice binary under the loader's listing");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("libc.so"),
        "the loader listed no libc for {BIN}, so the listing is not the loader's: {listing:?}"
    );
    let shared_asked = option_env!("SLUICE_SHARED_UNWINDER").is_some_and(|v| v != "0");
    assert_eq!(
        listing.contains("libgcc_s"),
        shared_asked,
        "{BIN} loads libgcc_s: {}, but a shared unwinder was asked for: {shared_asked}; \
         the loader's listing:\n{listing}",
        listing.contains("libgcc_s"),
    );
}
