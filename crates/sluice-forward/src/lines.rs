//! The plain-lines destination (`tcp://HOST:PORT`): the protocol of the
//! fast and durable ports, and of OK Log.
//!
//! Input is read in large chunks and written whole; a chunk's unterminated
//! last line is held back until its newline arrives, so a reconnect never
//! splits a line between two connections.
//!
//! On a write error the forwarder reconnects with exponential backoff
//! (100 ms doubling to `max_backoff`) and sends the chunk again. Plain lines
//! carry no acknowledgement, so a chunk the ingester had partly read before
//! the connection broke may be partly duplicated; use a `sluice://`
//! destination (the batch protocol) where that matters.
//!
//! At end of input the forwarder half-closes the connection and waits for
//! the ingester to close its side, which it does after it has read and
//! written every line.

use std::{
    io::{self, Read, Write},
    net::{Shutdown, TcpStream},
    time::Duration,
};

use crate::{defaults, metrics};

use crate::ForwardError;

/// Settings of a plain-lines (`tcp://`) run.
#[derive(Debug, Clone)]
pub struct LinesConfig {
    /// `host:port` of the ingester's line port.
    pub addr: String,
    /// Bytes read from the input at a time: the longest line held back
    /// whole; a longer one is sent in pieces.
    pub read_chunk_bytes: usize,
    /// The longest wait between connection attempts; the first is
    /// [`FIRST_LINES_BACKOFF`](defaults::FIRST_LINES_BACKOFF).
    pub max_backoff: Duration,
    /// Give up after this many failed connection attempts in a row
    /// (`None`: never).
    pub max_attempts: Option<u32>,
}

impl LinesConfig {
    /// Settings for `addr` at their defaults, retrying forever.
    pub fn new(addr: &str) -> LinesConfig {
        LinesConfig {
            addr: addr.to_string(),
            read_chunk_bytes: defaults::READ_CHUNK_BYTES,
            max_backoff: defaults::MAX_BACKOFF,
            max_attempts: None,
        }
    }
}

/// What a forwarder run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ForwardStats {
    /// Bytes read from the input.
    pub bytes_read: u64,
    /// Lines read, an unterminated last one included.
    pub lines_read: u64,
    /// Bytes written to the destination, chunks sent again after a
    /// reconnect included.
    pub bytes_sent: u64,
    /// Connections that broke during a write and were made again.
    pub reconnects: u64,
}

struct Sender<'a> {
    config: &'a LinesConfig,
    stream: Option<TcpStream>,
    stats: ForwardStats,
}

impl Sender<'_> {
    fn connect(&mut self) -> Result<&mut TcpStream, ForwardError> {
        let mut attempts = 0u32;
        let mut backoff = defaults::FIRST_LINES_BACKOFF;
        while self.stream.is_none() {
            let connected = crate::connect::connect(&self.config.addr, defaults::CONNECT_TIMEOUT);
            match connected {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    self.stream = Some(stream);
                }
                Err(err) => {
                    attempts += 1;
                    if self.config.max_attempts.is_some_and(|max| attempts >= max) {
                        return Err(ForwardError::GaveUp {
                            addr: self.config.addr.clone(),
                            attempts,
                            source: err,
                        });
                    }
                    tracing::warn!(addr = %self.config.addr, error = %err, retry_in_ms = backoff.as_millis() as u64, "cannot connect to ingester; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        }
        Ok(self.stream.as_mut().expect("connected above"))
    }

    /// Send `bytes`, reconnecting until they are written whole.
    fn send(&mut self, bytes: &[u8]) -> Result<(), ForwardError> {
        loop {
            let stream = self.connect()?;
            match stream.write_all(bytes) {
                Ok(()) => {
                    self.stats.bytes_sent += bytes.len() as u64;
                    metrics::sent_bytes(bytes.len() as u64);
                    return Ok(());
                }
                Err(err) => {
                    tracing::warn!(addr = %self.config.addr, error = %err, "connection to ingester broke; reconnecting and sending the chunk again");
                    self.stream = None;
                    self.stats.reconnects += 1;
                    metrics::reconnect();
                }
            }
        }
    }

    /// Half-close and wait for the ingester to finish reading.
    fn finish(&mut self) {
        if let Some(mut stream) = self.stream.take() {
            let _ = stream.flush();
            let _ = stream.shutdown(Shutdown::Write);
            let _ = stream.set_read_timeout(Some(defaults::LINES_CLOSE_WAIT));
            let mut sink = [0u8; 1024];
            while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
        }
    }
}

/// Forward every line of `input` to the destination.
pub fn forward_lines(
    config: &LinesConfig,
    mut input: impl Read,
) -> Result<ForwardStats, ForwardError> {
    let mut sender = Sender {
        config,
        stream: None,
        stats: ForwardStats::default(),
    };
    let mut buf = vec![0u8; config.read_chunk_bytes];
    // buf[..held] is an unterminated line carried into the next read.
    let mut held = 0usize;
    loop {
        if held == buf.len() {
            // A line longer than the buffer: send what we have; the ingester
            // applies its line limit.
            sender.send(&buf[..held])?;
            held = 0;
        }
        let n = match input.read(&mut buf[held..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ForwardError::Input(e)),
        };
        sender.stats.bytes_read += n as u64;
        let lines = memchr::memchr_iter(b'\n', &buf[held..held + n]).count() as u64;
        sender.stats.lines_read += lines;
        metrics::lines_read(lines);
        let filled = held + n;
        match memchr::memrchr(b'\n', &buf[..filled]) {
            Some(last_nl) => {
                sender.send(&buf[..=last_nl])?;
                buf.copy_within(last_nl + 1..filled, 0);
                held = filled - last_nl - 1;
            }
            None => held = filled,
        }
    }
    if held > 0 {
        buf.truncate(held);
        buf.push(b'\n');
        sender.stats.lines_read += 1;
        sender.send(&buf)?;
    }
    sender.finish();
    Ok(sender.stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_arrives_and_the_last_one_gets_a_newline() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            conn.read_to_end(&mut got).unwrap();
            got
        });
        let mut config = LinesConfig::new(&addr);
        config.read_chunk_bytes = 7;
        let input = b"one\ntwo\nthree is long\nlast".to_vec();
        let stats = forward_lines(&config, &input[..]).unwrap();
        assert_eq!(server.join().unwrap(), b"one\ntwo\nthree is long\nlast\n");
        assert_eq!(stats.lines_read, 4);
    }
}
