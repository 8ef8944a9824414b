//! Byte sizes on the command line: `1048576`, `64KiB`, `16MiB`, `1GB`.

/// A byte size flag: parsed by [`parse_bytes`], shown in `--help` as it is
/// best written (`16MiB`), so a default is given once, as a number, by the
/// library that owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size of a `usize` default.
    pub const fn of(bytes: usize) -> ByteSize {
        ByteSize(bytes as u64)
    }
}

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(text: &str) -> Result<ByteSize, String> {
        parse_bytes(text).map(ByteSize)
    }
}

impl std::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes = self.0;
        for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
            if bytes != 0 && bytes.trailing_zeros() >= shift {
                return write!(f, "{}{unit}", bytes >> shift);
            }
        }
        write!(f, "{bytes}")
    }
}

pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let value: u64 = digits.parse().map_err(|_| {
        format!("cannot parse size {text:?}: use a number of bytes, or KiB, MiB, GiB, KB, MB, GB")
    })?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => {
            return Err(format!(
                "unknown size unit in {text:?}: use KiB, MiB, GiB, KB, MB or GB"
            ));
        }
    };
    value
        .checked_mul(multiplier)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn a_size_is_shown_as_written_and_parses_back() {
        for (bytes, shown) in [
            (16 << 20, "16MiB"),
            (1 << 30, "1GiB"),
            (1536, "1536"),
            (0, "0"),
        ] {
            let size = super::ByteSize(bytes);
            assert_eq!(size.to_string(), shown);
            assert_eq!(shown.parse::<super::ByteSize>(), Ok(size));
        }
        assert_eq!(super::ByteSize(3 << 10).to_string(), "3KiB");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("1MiB"), Ok(1 << 20));
        assert_eq!(parse_bytes("16MiB"), Ok(16 << 20));
        assert_eq!(parse_bytes("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("MiB").is_err());
        assert!(parse_bytes("1 parsec").is_err());
    }
}
