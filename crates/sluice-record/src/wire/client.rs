//! The client side of the batch protocol: [`BatchBuilder`] encodes batches,
//! [`parse_reply`] reads the server's replies.

use std::fmt::Write as _;

use ulid::Ulid;

use super::Guarantee;

/// Builds batches for a client, in reused buffers.
#[derive(Debug, Default)]
pub struct BatchBuilder {
    section: Vec<u8>,
    count: u32,
}

impl BatchBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Drop the records pushed, keeping the buffer.
    pub fn clear(&mut self) {
        self.section.clear();
        self.count = 0;
    }

    /// Records pushed since the last clear.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Bytes of the record section so far (the header's `bytes`).
    pub fn section_len(&self) -> usize {
        self.section.len()
    }

    /// Add a record; `payload` must not contain a newline.
    pub fn push(&mut self, time_ms: Option<u64>, payload: &[u8]) {
        debug_assert!(memchr::memchr(b'\n', payload).is_none());
        let _ = write!(Fmt(&mut self.section), "{} ", payload.len());
        match time_ms {
            Some(t) => {
                let _ = write!(Fmt(&mut self.section), "{t} ");
            }
            None => self.section.extend_from_slice(b"- "),
        }
        self.section.extend_from_slice(payload);
        self.section.push(b'\n');
        self.count += 1;
    }

    /// The whole batch (header and section) appended to `out`.
    pub fn encode(
        &self,
        out: &mut Vec<u8>,
        seq: u64,
        topic: &str,
        guarantee: Guarantee,
        base: Option<Ulid>,
    ) {
        let crc = crc32fast::hash(&self.section);
        let _ = write!(
            Fmt(out),
            "BATCH {seq} {topic} {} {} {crc:08x} {}",
            self.count,
            self.section.len(),
            guarantee.name()
        );
        if let Some(base) = base {
            let _ = write!(Fmt(out), " {base}");
        }
        out.push(b'\n');
        out.extend_from_slice(&self.section);
    }
}

impl BatchBuilder {
    /// Close the batch: reserve its ids `base ..= base + count - 1` in
    /// `ids` (so the next batch starts above them), encode it with `base`,
    /// and clear the builder for the next batch. Returns the bytes to send
    /// (and to send again, unchanged, after a failure) and the record count.
    pub fn seal(
        &mut self,
        ids: &mut crate::IdGenerator,
        base: Ulid,
        seq: u64,
        topic: &str,
        guarantee: Guarantee,
    ) -> (Vec<u8>, u32) {
        let count = self.count;
        ids.skip_to(Ulid(base.0 + count.max(1) as u128 - 1));
        let mut wire = Vec::with_capacity(self.section.len() + 128);
        self.encode(&mut wire, seq, topic, guarantee, Some(base));
        self.clear();
        (wire, count)
    }
}

/// `fmt::Write` into a byte vector.
struct Fmt<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Fmt<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A server reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Batch `seq` was accepted and its guarantee holds.
    Ok {
        /// The batch's `seq`.
        seq: u64,
        /// The smallest id given to its records.
        first: Ulid,
        /// The largest id given to its records.
        last: Ulid,
    },
    /// A batch or command was refused.
    Err {
        /// The refused batch's `seq`; `None` (`ERR -`) when the server could
        /// not read the command and closes the connection.
        seq: Option<u64>,
        /// Why, as the server's [`WireError`](super::WireError) says.
        reason: String,
    },
    /// The answer to `PING`.
    Pong,
}

/// Parse one reply line (without its newline).
pub fn parse_reply(line: &[u8]) -> Option<Reply> {
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let mut fields = line.splitn(3, ' ');
    match fields.next()? {
        "OK" => {
            let seq = fields.next()?.parse().ok()?;
            let mut ids = fields.next()?.split(' ');
            let first = Ulid::from_string(ids.next()?).ok()?;
            let last = Ulid::from_string(ids.next()?).ok()?;
            Some(Reply::Ok { seq, first, last })
        }
        "ERR" => {
            let seq = match fields.next()? {
                "-" => None,
                n => Some(n.parse().ok()?),
            };
            Some(Reply::Err {
                seq,
                reason: fields.next().unwrap_or("").to_string(),
            })
        }
        "PONG" => Some(Reply::Pong),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse() {
        let a = Ulid::from_parts(1, 2);
        let line = format!("OK 7 {a} {a}");
        assert_eq!(
            parse_reply(line.as_bytes()),
            Some(Reply::Ok {
                seq: 7,
                first: a,
                last: a
            })
        );
        assert_eq!(
            parse_reply(b"ERR - bad header: x"),
            Some(Reply::Err {
                seq: None,
                reason: "bad header: x".into()
            })
        );
        assert_eq!(
            parse_reply(b"ERR 3 crc mismatch"),
            Some(Reply::Err {
                seq: Some(3),
                reason: "crc mismatch".into()
            })
        );
        assert_eq!(parse_reply(b"PONG"), Some(Reply::Pong));
        assert_eq!(parse_reply(b"OK x"), None);
    }
}
