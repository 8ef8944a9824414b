//! syslog over TCP: a sans-IO codec for the ingester's syslog listener
//! (port 5140) and the forwarder's agent (`--listen syslog://`).
//!
//! Three steps, borrowing, none allocating per message:
//! - [`framing`]: [`SyslogFramer`] splits a TCP byte stream into frames,
//!   detecting RFC 6587 octet counting (`MSG-LEN SP SYSLOG-MSG`) or
//!   non-transparent (LF) framing afresh at every frame, with a frame limit
//!   that truncates instead of wedging.
//! - [`parse`](mod@parse): [`parse()`] reads the RFC 5424 or RFC 3164 header of a
//!   frame: topic (APP-NAME or TAG), origin time in UTC milliseconds, and
//!   priority. A frame it cannot read is [`Format::Unknown`], never an error:
//!   the caller stores the original frame either way.
//! - [`record`]: the one frame → record mapping both listeners use
//!   ([`SyslogFramer::drain_records`]): topic, origin time (clamped), the
//!   message made one line.
//!
//! ```
//! use sluice_syslog::{Format, SyslogFramer, parse};
//!
//! let mut framer = SyslogFramer::new(1 << 20, 64 << 10);
//! let input = b"<13>Nov 21 10:00:00 host app[1]: hi\n22 <13>1 - h svc - - - ok";
//! let spare = framer.spare();
//! spare[..input.len()].copy_from_slice(input);
//! framer.filled(input.len());
//! let now_ms = 1_795_000_000_000; // 2026-11-18
//! let mut topics = Vec::new();
//! framer.drain(|frame| topics.push(parse(frame.bytes, now_ms).topic_or_default().to_owned()));
//! framer.finish(|frame| topics.push(parse(frame.bytes, now_ms).topic_or_default().to_owned()));
//! assert_eq!(topics, ["app", "svc"]);
//! assert_eq!(parse(b"no header", now_ms).format, Format::Unknown);
//! ```
//!
//! Architecture invariant: no I/O, no tokio; everything here is pure and
//! property tested, and fuzzed by `fuzz/fuzz_targets/syslog_frames.rs`.

pub mod framing;
pub mod parse;
pub mod record;

pub use framing::{DEFAULT_MAX_FRAME, Frame, FrameCounts, Framing, MAX_COUNT_DIGITS, SyslogFramer};
pub use parse::{DEFAULT_TOPIC, Format, MAX_PRI, Parsed, parse, topic_or_default};
pub use record::RecordCounts;
