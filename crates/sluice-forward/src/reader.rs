//! Reading input lines into batches.
//!
//! A reader thread (stdin) or a follower thread (`--file`, see
//! [`crate::follow`]) moves raw chunks to the batcher, so the batcher can
//! close a batch on its linger time even while the input is quiet. The
//! batcher frames lines with [`LineFramer`], reserves one ULID per line at
//! read time (the record's origin time) and closes a batch at
//! `batch_bytes` or `batch_records`, or `linger` after its first line. A
//! batch never spans two files, and it carries the offset just past its last
//! line, for the checkpoint.

use std::{
    io::Read,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use sluice_record::{
    IdGenerator, LineFramer, Ulid, now_ms,
    wire::{BatchBuilder, Guarantee},
};

use crate::{
    defaults,
    follow::{Input, PreviousSource},
    queue::{Batch, Queue},
    spool::{SourceKey, SourcePos},
};

/// How lines become batches.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Topic of every record read from stdin or a file (`--topic`); the
    /// agent takes each event's tag or APP-NAME instead.
    pub topic: String,
    /// The acknowledgement a batch asks for (`--guarantee`; not sent to
    /// fluent destinations).
    pub guarantee: Guarantee,
    /// Close a batch once its encoded records take this many bytes
    /// (`--batch-size`).
    pub batch_bytes: usize,
    /// Close a batch at this many records.
    pub batch_records: u32,
    /// Close a batch this long after its first line (`--linger`).
    pub linger: Duration,
    /// The longest line; longer ones are cut and counted as truncated
    /// (`--max-line`).
    pub max_line_bytes: usize,
    /// Prepended to every line.
    pub prefix: Vec<u8>,
    /// Encode batches as Fluentd Forward-mode frames instead of the batch
    /// protocol (for `fluent://` destinations).
    pub fluent: bool,
}

const CHUNK_BYTES: usize = defaults::READ_CHUNK_BYTES;

/// Feed `input` to a channel from a thread of its own, until its end.
pub fn spawn_stream_reader(
    mut input: impl Read + Send + 'static,
) -> std::io::Result<mpsc::Receiver<Input>> {
    let (chunks, incoming) = mpsc::sync_channel::<Input>(4);
    std::thread::Builder::new()
        .name("forward-read".into())
        .spawn(move || {
            loop {
                let mut chunk = vec![0u8; CHUNK_BYTES];
                match input.read(&mut chunk) {
                    Ok(0) => return,
                    Ok(n) => {
                        chunk.truncate(n);
                        if chunks.send(Input::Data(chunk)).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = chunks.send(Input::Error(e));
                        return;
                    }
                }
            }
        })?;
    Ok(incoming)
}

/// Batch what arrives on `incoming` until it ends (or `stop` is set),
/// pushing batches into `queue`. `seqs` numbers batches across batchers.
pub fn run_batcher(
    incoming: mpsc::Receiver<Input>,
    config: &BatchConfig,
    queue: &Arc<Queue>,
    seqs: &AtomicU64,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let mut framer = LineFramer::new(config.max_line_bytes, CHUNK_BYTES);
    let mut batcher = Batcher {
        config,
        queue,
        seqs,
        builder: BatchBuilder::new(),
        fluent: config
            .fluent
            .then(|| sluice_fluent::ForwardEncoder::new(&config.topic)),
        ids: IdGenerator::new(),
        base: None,
        opened: Instant::now(),
        line: Vec::new(),
        lines_read: 0,
        source: None,
        last_end: 0,
    };
    loop {
        if stop.load(Ordering::Relaxed) {
            // Shutdown: close the open batch; an unterminated line stays
            // unread (a file resumes before it).
            batcher.close_batch();
            return Ok(());
        }
        let wait = match batcher.base {
            Some(_) => config.linger.saturating_sub(batcher.opened.elapsed()),
            None => defaults::STOP_CHECK,
        };
        match incoming.recv_timeout(wait) {
            Ok(Input::Data(chunk)) => batcher.feed(&mut framer, &chunk),
            Ok(Input::Source {
                key,
                path,
                offset,
                previous,
            }) => {
                match previous {
                    PreviousSource::Finished => {
                        let truncated = framer.finish(|l| batcher.add_line(l.bytes, l.end));
                        batcher.report(truncated);
                    }
                    PreviousSource::Truncated | PreviousSource::None => {}
                }
                batcher.close_batch();
                if let Some(old) = batcher.source.take()
                    && old != key
                {
                    queue.close_source(old);
                }
                framer = LineFramer::new(config.max_line_bytes, CHUNK_BYTES).with_offset(offset);
                queue.open_source(key, &path, offset);
                batcher.source = Some(key);
                batcher.last_end = offset;
            }
            Ok(Input::Stopped) => {
                batcher.close_batch();
                return Ok(());
            }
            Ok(Input::Error(e)) => {
                batcher.finish(&mut framer);
                return Err(e);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if batcher.base.is_some() && batcher.opened.elapsed() >= config.linger {
                    batcher.close_batch();
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                batcher.finish(&mut framer);
                return Ok(());
            }
        }
    }
}

struct Batcher<'a> {
    config: &'a BatchConfig,
    queue: &'a Arc<Queue>,
    seqs: &'a AtomicU64,
    builder: BatchBuilder,
    /// Used instead of `builder` for fluent destinations.
    fluent: Option<sluice_fluent::ForwardEncoder>,
    ids: IdGenerator,
    /// Id of the open batch's first record.
    base: Option<Ulid>,
    opened: Instant,
    /// Scratch for prefixed lines.
    line: Vec<u8>,
    /// Lines added since the last count was reported to the queue.
    lines_read: u64,
    /// The file being read, if any, and the offset past the last line added.
    source: Option<SourceKey>,
    last_end: u64,
}

impl Batcher<'_> {
    fn feed(&mut self, framer: &mut LineFramer, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            let spare = framer.spare();
            let n = spare.len().min(chunk.len());
            spare[..n].copy_from_slice(&chunk[..n]);
            framer.filled(n);
            chunk = &chunk[n..];
            let truncated = framer.drain(|l| self.add_line(l.bytes, l.end));
            self.report(truncated);
        }
    }

    /// Tell the queue how many lines were read since the last report; done
    /// before a batch is pushed, so the accounting always balances.
    fn report(&mut self, truncated: u64) {
        if self.lines_read > 0 || truncated > 0 {
            self.queue.read(self.lines_read, truncated);
            self.lines_read = 0;
        }
    }

    fn add_line(&mut self, line: &[u8], end: u64) {
        self.lines_read += 1;
        self.last_end = end;
        if self.base.is_none() {
            self.base = Some(self.ids.next_at(now_ms()));
            self.opened = Instant::now();
        }
        let line = if self.config.prefix.is_empty() {
            line
        } else {
            self.line.clear();
            self.line.extend_from_slice(&self.config.prefix);
            self.line.extend_from_slice(line);
            &self.line
        };
        let full = match self.fluent.as_mut() {
            Some(frame) => {
                let base_ms = self.base.map_or(0, |b| b.timestamp_ms());
                frame.push(base_ms as i64 * 1_000_000, line);
                frame.encoded_len() >= self.config.batch_bytes
                    || frame.len() >= self.config.batch_records as usize
            }
            None => {
                // Records share the batch's base time: their ids are base,
                // base+1, …
                self.builder.push(None, line);
                self.builder.section_len() >= self.config.batch_bytes
                    || self.builder.count() >= self.config.batch_records
            }
        };
        if full {
            self.close_batch();
        }
    }

    fn close_batch(&mut self) {
        let Some(base) = self.base.take() else {
            return;
        };
        self.report(0);
        let seq = self.seqs.fetch_add(1, Ordering::Relaxed) + 1;
        let (wire, count) = match self.fluent.as_mut() {
            Some(frame) => {
                let count = frame.len();
                // The chunk id names the batch in the ack.
                (frame.seal(&crate::acked::chunk_id(seq)), count as u32)
            }
            None => self.builder.seal(
                &mut self.ids,
                base,
                seq,
                &self.config.topic,
                self.config.guarantee,
            ),
        };
        let mut batch = Batch::new(seq, count as u64, wire);
        batch.source = self.source.map(|key| SourcePos {
            key,
            end: self.last_end,
        });
        self.queue.push(batch);
    }

    fn finish(&mut self, framer: &mut LineFramer) {
        let truncated = framer.finish(|l| self.add_line(l.bytes, l.end));
        self.report(truncated);
        self.close_batch();
    }
}
