//! The stream ports: fast and durable lines, and syslog over TCP.
//!
//! - **fast** (7651) and **durable** (7652): newline-delimited text (the OK
//!   Log wire format, so `oklog forward` and `nc` can send), cut by
//!   [`LineFramer`], each line a record of topic `default` at the arrival
//!   time. Fast is fire-and-forget (segments are fsynced when sealed);
//!   durable fsyncs each batch before the next read, so when the server
//!   closes the connection after the client's EOF every line the client
//!   sent is on disk.
//! - **syslog** (5140): RFC 6587 frames cut by [`SyslogFramer`], each made
//!   a record by the mapping in [`sluice_syslog::record`] (shared with the
//!   forwarder's agent): APP-NAME or TAG as topic, else `syslog`; the
//!   header's time (clamped) or the arrival time; the message as sent, made
//!   one line (counted in `sluice_ingest_syslog_multiline_total`). A frame
//!   whose header does not parse is stored raw under `syslog` and counted
//!   (`sluice_ingest_syslog_unparsed_total`); none is dropped for its
//!   header.
//!
//! Hot path, per read buffer: one `read`, units split by `memchr`, one id
//! per record from the connection's [`IdGenerator`], one batch encoded into
//! a reused buffer, one `write` (plus one `fdatasync` in durable mode).
//! Nothing is allocated per record. Whatever arrived before the connection
//! ended, a reset included, is kept: an unterminated last line is a line.

use std::{net::SocketAddr, sync::Arc};

use sluice_record::{
    DEFAULT_TOPIC, FLAG_TRUNCATED, FramedLine, IdGenerator, LineFramer, Record, Unstamped,
    intake::{End, Flow, Protocol},
    now_ms,
};
use sluice_syslog::SyslogFramer;

use crate::{
    error::IngestError,
    listener::{IngestConfig, Mode},
    log::IngestLog,
    metrics,
    sink::SegmentSink,
};

pub(crate) struct Stream {
    mode: Mode,
    peer: SocketAddr,
    framer: Framer,
    ids: IdGenerator,
    sink: SegmentSink,
    max_line_bytes: usize,
    warned_truncation: bool,
}

enum Framer {
    Lines(LineFramer),
    Syslog(SyslogFramer),
}

impl Stream {
    /// A connection of `mode`: fast, durable or syslog.
    pub fn new(mode: Mode, peer: SocketAddr, log: &Arc<IngestLog>, config: &IngestConfig) -> Self {
        let (max, chunk) = (config.max_line_bytes, config.read_chunk_bytes);
        let framer = match mode {
            Mode::Syslog => Framer::Syslog(SyslogFramer::new(max, chunk)),
            Mode::Fast | Mode::Durable => Framer::Lines(LineFramer::new(max, chunk)),
            Mode::Batch | Mode::Fluent => unreachable!("{} is not a stream protocol", mode.name()),
        };
        Stream {
            mode,
            peer,
            framer,
            ids: IdGenerator::new(),
            sink: SegmentSink::new(log.clone(), config),
            max_line_bytes: max,
            warned_truncation: false,
        }
    }

    /// Turn the records in the framer into one batch and append it.
    fn ingest(&mut self, at_eof: bool, bytes: u64) -> Result<(), IngestError> {
        let now = now_ms();
        self.sink.begin();
        let (sink, ids) = (&mut self.sink, &mut self.ids);
        let truncated = match &mut self.framer {
            Framer::Lines(framer) => {
                let mut push = |line: FramedLine<'_>| {
                    sink.push(Record {
                        id: ids.next_at(now),
                        flags: if line.truncated { FLAG_TRUNCATED } else { 0 },
                        topic: DEFAULT_TOPIC,
                        payload: line.bytes,
                    })
                };
                let mut truncated = framer.drain(&mut push);
                if at_eof {
                    truncated += framer.finish(&mut push);
                }
                truncated
            }
            Framer::Syslog(framer) => {
                let push = |r: Unstamped<'_>| sink.push(r.stamp(ids.at_origin(r.time_ms)));
                let counts = if at_eof {
                    framer.finish_records(now, push)
                } else {
                    framer.drain_records(now, push)
                };
                metrics::syslog_frames(counts.unparsed, counts.multiline, counts.frames.incomplete);
                if counts.frames.incomplete > 0 {
                    tracing::warn!(peer = %self.peer, "syslog connection closed in the middle of an octet-counted frame; the partial frame was discarded");
                }
                counts.frames.truncated
            }
        };
        let count = u64::from(self.sink.count());
        metrics::buffer_ingested(self.mode, count, bytes, truncated);
        if truncated > 0 && !self.warned_truncation {
            self.warned_truncation = true;
            tracing::warn!(protocol = self.mode.name(), peer = %self.peer, max_line_bytes = self.max_line_bytes, "line longer than the limit was cut and flagged (logged once per connection; raise --max-line to keep longer lines)");
        }
        self.sink.write(self.mode == Mode::Durable)?;
        Ok(())
    }
}

impl Protocol for Stream {
    type Error = IngestError;

    fn spare(&mut self) -> &mut [u8] {
        match &mut self.framer {
            Framer::Lines(framer) => framer.spare(),
            Framer::Syslog(framer) => framer.spare(),
        }
    }

    fn on_read(&mut self, n: usize) -> Result<Flow, IngestError> {
        match &mut self.framer {
            Framer::Lines(framer) => framer.filled(n),
            Framer::Syslog(framer) => framer.filled(n),
        }
        self.ingest(false, n as u64)?;
        Ok(Flow::Continue)
    }

    fn on_tick(&mut self) -> Result<(), IngestError> {
        self.sink.maybe_seal(false)
    }

    fn finish(&mut self, _: End) -> Result<(), IngestError> {
        let ingested = self.ingest(true, 0);
        let sealed = self.sink.maybe_seal(true);
        ingested.and(sealed)
    }
}
