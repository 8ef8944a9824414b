//! Reading input lines into batches.
//!
//! A reader thread moves raw chunks from the input to the batcher, so the
//! batcher can close a batch on its linger time even while the input is
//! quiet. The batcher frames lines with [`LineFramer`], reserves one ULID per
//! line at read time (the record's origin time) and closes a batch at
//! `batch_bytes` or `batch_records`, or `linger` after its first line.

use std::{
    io::Read,
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use sluice_record::{
    IdGenerator, LineFramer, Ulid, now_ms,
    wire::{BatchBuilder, Guarantee},
};

use crate::queue::{Batch, Queue};

#[derive(Debug, Clone)]
pub struct BatchConfig {
    pub topic: String,
    pub guarantee: Guarantee,
    pub batch_bytes: usize,
    pub batch_records: u32,
    pub linger: Duration,
    pub max_line_bytes: usize,
    /// Prepended to every line.
    pub prefix: Vec<u8>,
}

const CHUNK_BYTES: usize = 256 << 10;

/// Read `input` to its end, pushing batches into `queue`.
pub fn read_batches(
    mut input: impl Read + Send + 'static,
    config: &BatchConfig,
    queue: &Arc<Queue>,
) -> std::io::Result<()> {
    let (chunks, incoming) = mpsc::sync_channel::<std::io::Result<Vec<u8>>>(4);
    std::thread::Builder::new()
        .name("forward-read".into())
        .spawn(move || {
            loop {
                let mut chunk = vec![0u8; CHUNK_BYTES];
                match input.read(&mut chunk) {
                    Ok(0) => return,
                    Ok(n) => {
                        chunk.truncate(n);
                        if chunks.send(Ok(chunk)).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = chunks.send(Err(e));
                        return;
                    }
                }
            }
        })?;
    let mut framer = LineFramer::new(config.max_line_bytes, CHUNK_BYTES);
    let mut batcher = Batcher {
        config,
        queue,
        builder: BatchBuilder::new(),
        ids: IdGenerator::new(),
        base: None,
        opened: Instant::now(),
        seq: 0,
        line: Vec::new(),
        lines_read: 0,
    };
    loop {
        let wait = match batcher.base {
            Some(_) => config.linger.saturating_sub(batcher.opened.elapsed()),
            None => Duration::from_secs(3600),
        };
        match incoming.recv_timeout(wait) {
            Ok(Ok(chunk)) => batcher.feed(&mut framer, &chunk),
            Ok(Err(e)) => {
                batcher.finish(&mut framer);
                return Err(e);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => batcher.close_batch(),
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
    builder: BatchBuilder,
    ids: IdGenerator,
    /// Id of the open batch's first record.
    base: Option<Ulid>,
    opened: Instant,
    seq: u64,
    /// Scratch for prefixed lines.
    line: Vec<u8>,
    /// Lines added since the last count was reported to the queue.
    lines_read: u64,
}

impl Batcher<'_> {
    fn feed(&mut self, framer: &mut LineFramer, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            let spare = framer.spare();
            let n = spare.len().min(chunk.len());
            spare[..n].copy_from_slice(&chunk[..n]);
            framer.filled(n);
            chunk = &chunk[n..];
            let truncated = framer.drain(|l| self.add_line(l.bytes));
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

    fn add_line(&mut self, line: &[u8]) {
        self.lines_read += 1;
        if self.base.is_none() {
            self.base = Some(self.ids.next_at(now_ms()));
            self.opened = Instant::now();
        }
        // Records share the batch's base time: their ids are base, base+1, …
        if self.config.prefix.is_empty() {
            self.builder.push(None, line);
        } else {
            self.line.clear();
            self.line.extend_from_slice(&self.config.prefix);
            self.line.extend_from_slice(line);
            self.builder.push(None, &self.line);
        }
        if self.builder.section_len() >= self.config.batch_bytes
            || self.builder.count() >= self.config.batch_records
        {
            self.close_batch();
        }
    }

    fn close_batch(&mut self) {
        let Some(base) = self.base.take() else {
            return;
        };
        self.report(0);
        self.seq += 1;
        let (wire, count) = self.builder.seal(
            &mut self.ids,
            base,
            self.seq,
            &self.config.topic,
            self.config.guarantee,
        );
        self.queue.push(Batch {
            seq: self.seq,
            records: count as u64,
            wire,
        });
    }

    fn finish(&mut self, framer: &mut LineFramer) {
        let truncated = framer.finish(|l| self.add_line(l.bytes));
        self.report(truncated);
        self.close_batch();
    }
}
