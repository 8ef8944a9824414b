use std::{
    io::{self, BufRead, BufReader, Write},
    net::TcpStream,
    time::Duration,
};

use sluice_record::{
    IdGenerator, Ulid, now_ms,
    wire::{BatchBuilder, Guarantee, Reply, parse_reply},
};

/// Where a [`Writer`] sends and how.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// `host:port` of an ingester's batch port.
    pub addr: String,
    /// The topic of every record written.
    pub topic: String,
    /// When the ingester acknowledges a batch: once written, fsynced, and
    /// so on.
    pub guarantee: Guarantee,
    /// Send a batch when its records reach this many bytes.
    pub batch_bytes: usize,
    /// How long to wait for each acknowledgement (the connection's read
    /// timeout); a batch not acknowledged by then has failed.
    pub timeout: Duration,
}

impl WriterConfig {
    /// Send to `addr` as topic `default`, acknowledged once written
    /// ([`Guarantee::Write`]), in batches of 1 MiB, waiting up to 30 s
    /// for each acknowledgement.
    pub fn new(addr: impl Into<String>) -> WriterConfig {
        WriterConfig {
            addr: addr.into(),
            topic: "default".into(),
            guarantee: Guarantee::Write,
            batch_bytes: 1 << 20,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Why a batch was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The ingester could not be reached.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The ingester's `host:port`.
        addr: String,
        /// What the connection attempt (or its setup) said.
        #[source]
        source: io::Error,
    },
    /// The batch could not be written to the connection.
    #[error("send batch {seq}: {source}")]
    Send {
        /// The batch's sequence number.
        seq: u64,
        /// What the write said.
        #[source]
        source: io::Error,
    },
    /// No acknowledgement could be read (a timeout, a closed connection).
    #[error("read the ack of batch {seq}: {source}")]
    ReadAck {
        /// The batch's sequence number.
        seq: u64,
        /// What the read said.
        #[source]
        source: io::Error,
    },
    /// The ingester refused the batch (`ERR`).
    #[error("the ingester refused batch {seq}: {reason}")]
    Refused {
        /// The batch's sequence number.
        seq: u64,
        /// The ingester's reason.
        reason: String,
    },
    /// The reply was not this batch's `OK` or `ERR`.
    #[error("unexpected reply to batch {seq}: {reply:?}")]
    UnexpectedReply {
        /// The batch's sequence number.
        seq: u64,
        /// The reply line as received.
        reply: String,
    },
}

/// A batch that was not acknowledged.
#[derive(Debug, Clone)]
pub struct FailedBatch {
    /// Its sequence number, which the acknowledgement must carry.
    pub seq: u64,
    /// Records in the batch.
    pub records: u32,
    /// The encoded batch, sent again as is by [`Writer::retry`].
    pub wire: Vec<u8>,
    /// Why it failed: the ingester's refusal, or the connection's error.
    pub reason: String,
}

/// One line written = one record. See the crate docs.
pub struct Writer {
    config: WriterConfig,
    connection: Option<(TcpStream, BufReader<TcpStream>)>,
    builder: BatchBuilder,
    ids: IdGenerator,
    base: Option<Ulid>,
    seq: u64,
    partial: Vec<u8>,
    failed: Vec<FailedBatch>,
    acked_records: u64,
}

impl Writer {
    /// A writer that connects at its first batch (and again after a
    /// failure).
    pub fn new(config: WriterConfig) -> Writer {
        Writer {
            config,
            connection: None,
            builder: BatchBuilder::new(),
            ids: IdGenerator::new(),
            base: None,
            seq: 0,
            partial: Vec::new(),
            failed: Vec::new(),
            acked_records: 0,
        }
    }

    /// Records acknowledged so far.
    pub fn acked_records(&self) -> u64 {
        self.acked_records
    }

    /// Batches that were not acknowledged, oldest first.
    pub fn take_failed(&mut self) -> Vec<FailedBatch> {
        std::mem::take(&mut self.failed)
    }

    /// Send every failed batch again. Returns how many are still failing.
    pub fn retry(&mut self) -> usize {
        for batch in std::mem::take(&mut self.failed) {
            if let Err(error) = self.send(batch.seq, &batch.wire) {
                self.failed.push(FailedBatch {
                    reason: error.to_string(),
                    ..batch
                });
            } else {
                self.acked_records += batch.records as u64;
            }
        }
        self.failed.len()
    }

    fn add_line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if self.base.is_none() {
            self.base = Some(self.ids.next_at(now_ms()));
        }
        self.builder.push(None, line);
    }

    /// Send the open batch and wait for its ack; a failure is kept for
    /// [`retry`](Self::retry), not lost.
    fn send_open_batch(&mut self) {
        let Some(base) = self.base.take() else {
            return;
        };
        self.seq += 1;
        let (wire, records) = self.builder.seal(
            &mut self.ids,
            base,
            self.seq,
            &self.config.topic,
            self.config.guarantee,
        );
        match self.send(self.seq, &wire) {
            Ok(()) => self.acked_records += records as u64,
            Err(error) => self.failed.push(FailedBatch {
                seq: self.seq,
                records,
                wire,
                reason: error.to_string(),
            }),
        }
    }

    fn send(&mut self, seq: u64, wire: &[u8]) -> Result<(), SendError> {
        let result = self.try_send(seq, wire);
        if result.is_err() {
            // Start afresh next time: the framing may be lost.
            self.connection = None;
        }
        result
    }

    fn try_send(&mut self, seq: u64, wire: &[u8]) -> Result<(), SendError> {
        if self.connection.is_none() {
            let connect = |addr: &str, timeout| -> io::Result<(TcpStream, BufReader<TcpStream>)> {
                let stream = TcpStream::connect(addr)?;
                stream.set_read_timeout(Some(timeout))?;
                let reader = BufReader::new(stream.try_clone()?);
                Ok((stream, reader))
            };
            let connection = connect(&self.config.addr, self.config.timeout).map_err(|source| {
                SendError::Connect {
                    addr: self.config.addr.clone(),
                    source,
                }
            })?;
            self.connection = Some(connection);
        }
        let (stream, reader) = self.connection.as_mut().expect("connected above");
        stream
            .write_all(wire)
            .map_err(|source| SendError::Send { seq, source })?;
        let mut line = Vec::new();
        reader
            .read_until(b'\n', &mut line)
            .map_err(|source| SendError::ReadAck { seq, source })?;
        let line = line.strip_suffix(b"\n").unwrap_or(&line);
        match parse_reply(line) {
            Some(Reply::Ok { seq: got, .. }) if got == seq => Ok(()),
            Some(Reply::Err { reason, .. }) => Err(SendError::Refused { seq, reason }),
            _ => Err(SendError::UnexpectedReply {
                seq,
                reply: String::from_utf8_lossy(line).into_owned(),
            }),
        }
    }
}

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            if self.partial.is_empty() {
                self.add_line(&rest[..nl]);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&rest[..nl]);
                self.add_line(&line);
            }
            rest = &rest[nl + 1..];
            if self.builder.section_len() >= self.config.batch_bytes {
                self.send_open_batch();
            }
        }
        self.partial.extend_from_slice(rest);
        Ok(buf.len())
    }

    /// Send every complete line and wait for the acks. Fails if any batch
    /// is not acknowledged; such batches stay available to
    /// [`Writer::take_failed`] and [`Writer::retry`].
    fn flush(&mut self) -> io::Result<()> {
        self.send_open_batch();
        match self.failed.last() {
            None => Ok(()),
            Some(failed) => Err(io::Error::other(format!(
                "{} batch(es) not acknowledged; last: {}",
                self.failed.len(),
                failed.reason
            ))),
        }
    }
}

impl Drop for Writer {
    /// Best effort: a last line without a newline and any unsent lines are
    /// sent, but a failure here cannot be reported or retried. Call
    /// [`flush`](Write::flush) (and [`Writer::retry`]) before dropping to
    /// know that everything was acknowledged.
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.add_line(&line);
        }
        self.send_open_batch();
    }
}
