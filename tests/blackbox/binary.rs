//! The built binary itself: how it is linked (see `build.rs`).

use std::io::Read;

use crate::harness::BIN;

/// On Linux with glibc the binary is a position-dependent executable
/// (ELF type `EXEC`), so the loader has no relative relocations to apply
/// at start: they took 0.4 ms of every `sluice query`. A build with
/// `SLUICE_PIE` set links a PIE (type `DYN`) on purpose.
#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn the_binary_is_linked_position_dependent_unless_a_pie_is_asked_for() {
    let mut bytes = [0u8; 18];
    std::fs::File::open(BIN)
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read the sluice binary's ELF header");
    assert_eq!(&bytes[..4], b"\x7fELF", "{BIN} is not an ELF file");
    // e_type, little-endian, after the 16 bytes of e_ident.
    let e_type = u16::from_le_bytes([bytes[16], bytes[17]]);
    let pie_asked = option_env!("SLUICE_PIE").is_some_and(|v| v != "0");
    let (expected, what) = match pie_asked {
        false => (2, "EXEC (position-dependent)"),
        true => (3, "DYN (a PIE, as SLUICE_PIE asked)"),
    };
    assert_eq!(
        e_type, expected,
        "{BIN} should be ELF type {what}, is type {e_type}"
    );
}
