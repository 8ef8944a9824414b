//! The agent's syslog listener (TCP; RFC 6587 octet counting or LF framing,
//! per frame).
//!
//! Frames become records by the mapping the ingester's syslog listener uses
//! ([`sluice_syslog::record`]): the topic is the APP-NAME or TAG (else
//! `syslog`), the header's timestamp is the origin time (clamped), and the
//! payload is the message line as sent (a multi-line counted message has its
//! inner line feeds turned into spaces). A header that does not parse keeps
//! the raw line, and is counted.
//!
//! A connection keeps one open batch per topic, up to [`MAX_OPEN_TOPICS`];
//! a batch closes when full, `linger` after its first line (checked after
//! every read and every poll interval), or when the connection ends.
//! Whatever arrived before a connection ends, or breaks, is queued.

use std::net::{SocketAddr, TcpStream};

use crate::metrics;
use sluice_record::{
    IdGenerator, Unstamped,
    intake::{End, Flow, Protocol},
    now_ms,
};
use sluice_syslog::SyslogFramer;

use super::{Intake, ListenError, OpenBatch};

/// Open batches per connection; one more topic closes them all first.
const MAX_OPEN_TOPICS: usize = 64;
const READ_CHUNK: usize = crate::defaults::READ_CHUNK_BYTES;

pub(super) fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    intake: &Intake<'_>,
) -> Result<(), ListenError> {
    let mut syslog = Syslog::new(peer, intake);
    sluice_record::intake::serve(&mut stream, intake.stop, &mut syslog)
}

/// One syslog connection of the agent.
struct Syslog<'a, 'i> {
    peer: SocketAddr,
    framer: SyslogFramer,
    batches: Batches<'a, 'i>,
}

impl<'a, 'i> Syslog<'a, 'i> {
    fn new(peer: SocketAddr, intake: &'a Intake<'i>) -> Self {
        Syslog {
            peer,
            framer: SyslogFramer::new(intake.batch.max_line_bytes, READ_CHUNK),
            batches: Batches {
                intake,
                ids: IdGenerator::new(),
                open: Vec::new(),
                truncated: 0,
                unparsed: 0,
            },
        }
    }
}

impl Protocol for Syslog<'_, '_> {
    type Error = ListenError;

    fn spare(&mut self) -> &mut [u8] {
        self.framer.spare()
    }

    fn on_read(&mut self, n: usize) -> Result<Flow, ListenError> {
        self.framer.filled(n);
        let batches = &mut self.batches;
        let counts = self
            .framer
            .drain_records(now_ms(), |record| batches.add(record));
        batches.unparsed += counts.unparsed;
        Ok(Flow::Continue)
    }

    fn on_tick(&mut self) -> Result<(), ListenError> {
        self.batches.close_lingered();
        Ok(())
    }

    /// Whatever arrived before the end (or a reset) is kept.
    fn finish(&mut self, _: End) -> Result<(), ListenError> {
        let batches = &mut self.batches;
        let counts = self
            .framer
            .finish_records(now_ms(), |record| batches.add(record));
        if counts.frames.incomplete > 0 {
            metrics::listen_errors("syslog", "incomplete_at_eof", counts.frames.incomplete);
            tracing::warn!(peer = %self.peer, "syslog client closed in the middle of an octet-counted frame; the partial frame was discarded");
        }
        batches.unparsed += counts.unparsed;
        batches.close_all();
        Ok(())
    }
}

struct Batches<'a, 'i> {
    intake: &'a Intake<'i>,
    ids: IdGenerator,
    open: Vec<OpenBatch>,
    /// Records cut at the line limit, not yet reported to the queue.
    truncated: u64,
    unparsed: u64,
}

impl Batches<'_, '_> {
    fn add(&mut self, record: Unstamped<'_>) {
        self.truncated += u64::from(record.is_truncated());
        let found = self
            .open
            .iter()
            .position(|b| b.topic().as_bytes() == record.topic);
        let at = match found {
            Some(at) => at,
            None => {
                if self.open.len() >= MAX_OPEN_TOPICS {
                    self.close_all();
                }
                let topic = std::str::from_utf8(record.topic).expect("a syslog topic is ASCII");
                let batch = OpenBatch::new(topic, self.intake, &mut self.ids);
                self.open.push(batch);
                self.open.len() - 1
            }
        };
        self.open[at].push(record.time_ms, record.payload);
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
            metrics::listen_syslog_unparsed(self.unparsed);
            self.unparsed = 0;
        }
    }
}
