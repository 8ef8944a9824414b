//! The agent's syslog listener (TCP; RFC 6587 octet counting or LF framing,
//! per frame).
//!
//! Frames are parsed as the ingester's syslog listener parses them
//! ([`sluice_syslog`]): the topic is the APP-NAME or TAG (else `syslog`), the
//! header's timestamp is the origin time, and the payload is the message
//! line as sent (a multi-line counted message has its inner line feeds
//! turned into spaces). A header that does not parse keeps the raw line, and
//! is counted.
//!
//! A connection keeps one open batch per topic, up to [`MAX_OPEN_TOPICS`];
//! a batch closes when full, `linger` after its first line, or when the
//! connection ends. Whatever arrived before a connection ends, or breaks,
//! is queued.

use std::{
    io::Read,
    net::{SocketAddr, TcpStream},
    sync::atomic::Ordering,
};

use metrics::counter;
use sluice_record::{IdGenerator, clamp_time_ms, now_ms};
use sluice_syslog::{Format, SyslogFramer};

use super::{Intake, OpenBatch};

/// Open batches per connection; one more topic closes them all first.
const MAX_OPEN_TOPICS: usize = 64;
const READ_CHUNK: usize = 256 << 10;

pub(super) fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    intake: &Intake<'_>,
) -> Result<(), String> {
    let mut framer = SyslogFramer::new(intake.batch.max_line_bytes, READ_CHUNK);
    let mut batches = Batches {
        intake,
        ids: IdGenerator::new(),
        open: Vec::new(),
        topic: Vec::new(),
        line: Vec::new(),
        truncated: 0,
        unparsed: 0,
    };
    let outcome = loop {
        if intake.stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        match stream.read(framer.spare()) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                framer.filled(n);
                let now = now_ms();
                framer.drain(|frame| batches.add(frame, now));
            }
            Err(e) if super::is_idle(&e) => {}
            Err(e) => break Err(format!("read: {e}")),
        }
        batches.close_lingered();
    };
    // Whatever arrived before the end (or a reset) is kept.
    let now = now_ms();
    let counts = framer.finish(|frame| batches.add(frame, now));
    if counts.incomplete > 0 {
        counter!("sluice_forward_listen_errors_total", "listener" => "syslog", "reason" => "incomplete_at_eof").increment(counts.incomplete);
        tracing::warn!(%peer, "syslog client closed in the middle of an octet-counted frame; the partial frame was discarded");
    }
    batches.close_all();
    outcome
}

struct Batches<'a, 'i> {
    intake: &'a Intake<'i>,
    ids: IdGenerator,
    open: Vec<OpenBatch>,
    /// Scratch for a cleaned topic.
    topic: Vec<u8>,
    /// Scratch for a multi-line message made one line.
    line: Vec<u8>,
    /// Frames cut at the line limit, not yet reported to the queue.
    truncated: u64,
    unparsed: u64,
}

impl Batches<'_, '_> {
    fn add(&mut self, frame: sluice_syslog::Frame<'_>, now: u64) {
        let parsed = sluice_syslog::parse(frame.bytes, now as i64);
        if parsed.format == Format::Unknown {
            self.unparsed += 1;
        }
        self.truncated += frame.truncated as u64;
        let ms = parsed
            .time_ms
            .filter(|t| *t > 0)
            .map_or(now, |t| clamp_time_ms(t as u64, now));
        sluice_record::clean_topic(
            parsed.topic_or_default().as_bytes(),
            sluice_syslog::DEFAULT_TOPIC.as_bytes(),
            &mut self.topic,
        );
        let found = self
            .open
            .iter()
            .position(|b| b.topic().as_bytes() == self.topic.as_slice());
        let at = match found {
            Some(at) => at,
            None => {
                if self.open.len() >= MAX_OPEN_TOPICS {
                    self.close_all();
                }
                let topic = std::str::from_utf8(&self.topic).expect("a clean topic is ASCII");
                let batch = OpenBatch::new(topic, self.intake, &mut self.ids);
                self.open.push(batch);
                self.open.len() - 1
            }
        };
        let (line, _) = sluice_syslog::one_line(frame.bytes, &mut self.line);
        self.open[at].push(ms, line);
        if self.open[at].is_full(self.intake.batch) {
            let batch = self.open.swap_remove(at);
            self.close(batch);
        }
    }

    fn close(&mut self, batch: OpenBatch) {
        let batch = batch.seal(self.intake, &mut self.ids);
        self.intake.queue.read(batch.records, self.truncated);
        self.truncated = 0;
        self.intake.queue.push(batch);
    }

    fn close_lingered(&mut self) {
        let mut i = 0;
        while i < self.open.len() {
            if self.open[i].lingered(self.intake.batch) {
                let batch = self.open.swap_remove(i);
                self.close(batch);
            } else {
                i += 1;
            }
        }
        self.report_unparsed();
    }

    fn close_all(&mut self) {
        while let Some(batch) = self.open.pop() {
            self.close(batch);
        }
        if self.truncated > 0 {
            self.intake.queue.read(0, self.truncated);
            self.truncated = 0;
        }
        self.report_unparsed();
    }

    fn report_unparsed(&mut self) {
        if self.unparsed > 0 {
            counter!("sluice_forward_listen_syslog_unparsed_total").increment(self.unparsed);
            self.unparsed = 0;
        }
    }
}
