//! The syslog listener (TCP, port 5140).
//!
//! Framing and header parsing are in [`sluice_syslog`]; this module turns
//! frames into records:
//! - the topic is the APP-NAME (RFC 5424) or TAG (RFC 3164), else `syslog`;
//! - the header's timestamp becomes the ULID time where it parses
//!   (clamped to a minute ahead of now), else the arrival time;
//! - the payload is the message exactly as the sender framed it. The one
//!   change: a multi-line octet-counted message has its inner line feeds
//!   turned into spaces, since a payload is one line (counted in
//!   `sluice_ingest_syslog_multiline_total`).
//!
//! A frame whose header does not parse is stored raw under `syslog` and
//! counted (`sluice_ingest_syslog_unparsed_total`); no line is ever dropped
//! for its header. Like the line listeners, each read buffer becomes one
//! batch appended to the connection's segment.

use std::{
    io::Read,
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use sluice_record::{
    BatchEncoder, FLAG_TRUNCATED, IdGenerator, Record, Ulid, clamp_time_ms, now_ms,
};
use sluice_syslog::{Format, SyslogFramer};

use crate::{
    listener::{IngestConfig, POLL_INTERVAL, is_idle},
    log::IngestLog,
    metrics,
    sink::SegmentSink,
};

pub(crate) fn serve(
    stream: &mut TcpStream,
    peer: SocketAddr,
    log: &Arc<IngestLog>,
    config: &IngestConfig,
    shutdown: &AtomicBool,
) -> Result<(), String> {
    stream
        .set_read_timeout(Some(POLL_INTERVAL))
        .map_err(|e| e.to_string())?;
    let mut conn = SyslogConnection {
        framer: SyslogFramer::new(config.max_line_bytes, config.read_chunk_bytes),
        sink: SegmentSink::new(log.clone(), config.clone()),
        encoder: BatchEncoder::new(),
        ids: IdGenerator::new(),
        line: Vec::new(),
        peer,
    };
    let outcome = loop {
        if shutdown.load(Ordering::Relaxed) {
            break Ok(());
        }
        match stream.read(conn.framer.spare()) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                conn.framer.filled(n);
                if let Err(e) = conn.ingest(false, n as u64) {
                    break Err(e);
                }
            }
            Err(e) if is_idle(&e) => {}
            Err(e) => break Err(format!("read: {e}")),
        }
        if let Err(e) = conn.sink.maybe_seal(false) {
            break Err(e);
        }
    };
    // Whatever arrived before the end (or a reset) is kept.
    let finished = conn
        .ingest(true, 0)
        .and_then(|_| conn.sink.maybe_seal(true));
    outcome.and(finished)
}

struct SyslogConnection {
    framer: SyslogFramer,
    sink: SegmentSink,
    encoder: BatchEncoder,
    ids: IdGenerator,
    /// Scratch for a multi-line message made one line.
    line: Vec<u8>,
    peer: SocketAddr,
}

impl SyslogConnection {
    /// Turn the frames in the framer into one batch and append it.
    fn ingest(&mut self, at_eof: bool, bytes: u64) -> Result<(), String> {
        let now = now_ms();
        self.encoder.begin();
        let (encoder, ids, line) = (&mut self.encoder, &mut self.ids, &mut self.line);
        let (mut first, mut last) = (Ulid(u128::MAX), Ulid(0));
        let (mut unparsed, mut multiline) = (0u64, 0u64);
        let mut push = |frame: sluice_syslog::Frame<'_>| {
            let parsed = sluice_syslog::parse(frame.bytes, now as i64);
            if parsed.format == Format::Unknown {
                unparsed += 1;
            }
            let ms = parsed
                .time_ms
                .filter(|t| *t > 0)
                .map_or(now, |t| clamp_time_ms(t as u64, now));
            let id = ids.at_origin(ms);
            first = first.min(id);
            last = last.max(id);
            let (payload, changed) = sluice_syslog::one_line(frame.bytes, line);
            multiline += changed as u64;
            encoder.push(Record {
                id,
                flags: if frame.truncated { FLAG_TRUNCATED } else { 0 },
                topic: parsed.topic_or_default().as_bytes(),
                payload,
            });
        };
        let mut counts = self.framer.drain(&mut push);
        if at_eof {
            counts += self.framer.finish(&mut push);
        }
        metrics::syslog_frames(unparsed, multiline, counts.incomplete);
        if counts.incomplete > 0 {
            tracing::warn!(peer = %self.peer, "syslog connection closed in the middle of an octet-counted frame; the partial frame was discarded");
        }
        let count = self.encoder.count() as u64;
        metrics::buffer_ingested(crate::Mode::Syslog, count, bytes, counts.truncated);
        if count == 0 {
            return Ok(());
        }
        if let Err(failure) = self.sink.append(&mut self.encoder, first, last, false) {
            metrics::records_dropped("write_error", count);
            return Err(failure.message);
        }
        Ok(())
    }
}
