//! The built binary itself: how it is linked (see `build.rs` and
//! `scripts/build-release`), and what its linking could break.

use std::process::Command;

use crate::harness::*;

/// How the binary under test should be linked: `SLUICE_TEST_LINKING`,
/// `dynamic` (cargo's build, the default) or `static` (the release binary
/// of `scripts/build-release`, which CI tests with this suite too).
fn linking_expected() -> String {
    match std::env::var("SLUICE_TEST_LINKING") {
        Ok(linking) => linking,
        Err(_) if std::env::var_os("SLUICE_TEST_BIN").is_some() => panic!(
            "SLUICE_TEST_BIN names a binary but SLUICE_TEST_LINKING does not say how it is \
             linked: set it to static (the binary of scripts/build-release) or dynamic"
        ),
        Err(_) => "dynamic".into(),
    }
}

/// The ELF header's `e_type`: 3 (`ET_DYN`) for a position-independent
/// executable, static-pie included; 2 (`ET_EXEC`) for one linked at a
/// fixed address.
fn elf_type(path: &str) -> u16 {
    let head = std::fs::read(path).expect("read the binary");
    assert_eq!(&head[..4], b"\x7fELF", "{path} is not an ELF file");
    let e_type = [head[16], head[17]];
    // EI_DATA: 1 little-endian, 2 big-endian.
    match head[5] {
        2 => u16::from_be_bytes(e_type),
        _ => u16::from_le_bytes(e_type),
    }
}

/// The loader's own listing of what a start loads (what `ldd` prints). A
/// static binary has no loader, so the variable is not read and the
/// command runs as asked.
fn loader_listing() -> (std::process::Output, String) {
    let out = Command::new(&*BIN)
        .arg("--version")
        .env("LD_TRACE_LOADED_OBJECTS", "1")
        .output()
        .expect("run the sluice binary under the loader's listing");
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, listing)
}

/// A dynamically linked build has the unwinder linked in (`libgcc_eh.a`),
/// so the loader does not open `libgcc_s.so.1` at every start: that
/// library and its CPU-detecting constructor took 0.1 ms of each `sluice
/// query`. A build with `SLUICE_SHARED_UNWINDER` set links the shared one on
/// purpose (the test crate is built by the same cargo run, so it sees the
/// same variable). The release binary is static-pie: no loader and no
/// shared object (0.3 ms of each start: BENCHMARKS.md, 2026-12-04, night),
/// and still position-independent, so its address is randomised.
#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn the_binary_is_linked_as_expected() {
    let (out, listing) = loader_listing();
    let bin = &*BIN;
    match linking_expected().as_str() {
        "static" => {
            assert!(
                out.status.success() && listing.starts_with("sluice "),
                "{bin} should be static, so the loader's listing is not made and --version \
                 runs; it printed: {listing:?}, stderr {:?}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                !listing.contains(".so"),
                "{bin} should load no shared object: {listing:?}"
            );
            assert_eq!(
                elf_type(bin),
                3,
                "{bin} should be static-pie (ELF type ET_DYN), not linked at a fixed address"
            );
        }
        "dynamic" => {
            assert!(
                listing.contains("libc.so"),
                "the loader listed no libc for {bin}, so the listing is not the loader's: \
                 {listing:?}"
            );
            let shared_asked = option_env!("SLUICE_SHARED_UNWINDER").is_some_and(|v| v != "0");
            assert_eq!(
                listing.contains("libgcc_s"),
                shared_asked,
                "{bin} loads libgcc_s: {}, but a shared unwinder was asked for: \
                 {shared_asked}; the loader's listing:\n{listing}",
                listing.contains("libgcc_s"),
            );
        }
        other => panic!("SLUICE_TEST_LINKING is {other:?}; use static or dynamic"),
    }
}

/// Host names are resolved by the C library (`getaddrinfo`), which a
/// static glibc binary does with the NSS modules built into it (`files`,
/// then `dns`): a node named `localhost` is reached by a forwarder and by
/// `sluice query`, whichever of `::1` and 127.0.0.1 the name gives first
/// (the node listens on 127.0.0.1 only).
#[test]
fn a_node_named_by_host_name_is_reached() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let by_name = |addr: &str| addr.replace("127.0.0.1", "localhost");
    let input = numbered_lines(1_000, "named");
    let forwarder = Forwarder::stdin(&[&format!("sluice://{}", by_name(&node.batch))], &[]);
    let counts = forwarder.feed(input.clone(), || {});
    assert_eq!(
        counts["acked"], 1_000,
        "forwarding to a host name: {counts}"
    );
    node.wait_records(1_000);
    let out = Command::new(&*BIN)
        .args([
            "query",
            "--api",
            &by_name(&node.api),
            "--from",
            "24h",
            "-q",
            "named",
        ])
        .output()
        .expect("run sluice query");
    assert!(
        out.status.success(),
        "query of a node named by host name failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lines_of(&out.stdout), lines_of(&input));
}
