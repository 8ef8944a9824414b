//! The one connection loop of the intake layer.
//!
//! Every protocol that faces the network (the ingester's fast, durable,
//! batch, fluent and syslog ports, and the forwarder's local agent for
//! fluent and syslog) reads a connection the same way; [`serve`] is that
//! way, and a [`Protocol`] says what to do with the bytes:
//!
//! - read into [`Protocol::spare`] (the codec's [`ReadBuffer`](crate::ReadBuffer));
//! - after a read of `n > 0` bytes, [`Protocol::on_read`] decodes and
//!   handles everything complete; it may ask to close the connection
//!   ([`Flow::Close`]) when the stream's framing is lost;
//! - a read that times out (the caller sets the socket's read timeout to
//!   its poll interval) or is interrupted is not an error: it lets the loop
//!   look at the stop flag;
//! - after every read and every such timeout, [`Protocol::on_tick`] does
//!   the work that is due by time (seal a segment by age, close a batch
//!   that lingered);
//! - the loop ends at the end of input, at the stop flag, when the protocol
//!   asks, or at the first error; a read error (a reset connection) does
//!   not lose what arrived before it: [`Protocol::finish`] is called in
//!   every case, told how input ended, and handles what is left (an
//!   unterminated last line is still a line; a partial frame is counted and
//!   dropped).
//!
//! The loop opens nothing and starts no thread: the caller owns the socket,
//! its timeouts and its threads. It reads only from the [`Read`] it is
//! given, so it is tested here with scripted readers.

use std::{
    io::{self, Read},
    sync::atomic::{AtomicBool, Ordering},
};

/// What [`Protocol::on_read`] wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// Stop reading: the stream cannot be decoded any further.
    Close,
}

/// How the input of a connection ended, as told to [`Protocol::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The peer closed its side: a read returned 0 bytes.
    Eof,
    /// The stop flag was set.
    Stopped,
    /// [`Protocol::on_read`] returned [`Flow::Close`].
    Closed,
    /// A read failed (a reset connection) or the protocol returned an
    /// error; [`serve`] returns that error after `finish`.
    Failed,
}

/// A read from the connection failed (other than a timeout).
#[derive(Debug, thiserror::Error)]
#[error("read from the connection: {0}")]
pub struct ReadError(#[source] pub io::Error);

/// What one protocol does with the bytes of a connection.
pub trait Protocol {
    /// The protocol's error; a failed read becomes one through `From`.
    type Error: From<ReadError>;

    /// Room for the next read (the codec's read buffer).
    fn spare(&mut self) -> &mut [u8];

    /// `n > 0` bytes were read into [`spare`](Self::spare): handle every
    /// complete unit.
    fn on_read(&mut self, n: usize) -> Result<Flow, Self::Error>;

    /// Called after every read and every poll interval without one: the
    /// work that is due by time. Nothing, unless the protocol says so.
    fn on_tick(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// The input ended as `end` says: handle what is left. Called exactly
    /// once, whatever ended the loop.
    fn finish(&mut self, end: End) -> Result<(), Self::Error>;
}

/// Whether a read error only means that the poll interval passed (or a
/// signal interrupted the read): not an error, read again.
pub fn is_idle(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Serve one connection: read `input` into `protocol` until the end of
/// input, `stop`, a close or an error, then [`Protocol::finish`]. Returns
/// the first error (the loop's, else `finish`'s).
pub fn serve<P: Protocol>(
    input: &mut impl Read,
    stop: &AtomicBool,
    protocol: &mut P,
) -> Result<(), P::Error> {
    let outcome = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(End::Stopped);
        }
        match input.read(protocol.spare()) {
            Ok(0) => break Ok(End::Eof),
            Ok(n) => match protocol.on_read(n) {
                Ok(Flow::Continue) => {}
                Ok(Flow::Close) => break Ok(End::Closed),
                Err(err) => break Err(err),
            },
            Err(err) if is_idle(&err) => {}
            Err(err) => break Err(ReadError(err).into()),
        }
        if let Err(err) = protocol.on_tick() {
            break Err(err);
        }
    };
    let end = match &outcome {
        Ok(end) => *end,
        Err(_) => End::Failed,
    };
    let finished = protocol.finish(end);
    outcome.and(finished)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A reader that plays a script: bytes, timeouts, an error, the end.
    struct Script(VecDeque<io::Result<Vec<u8>>>);

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.pop_front() {
                None => Ok(0),
                Some(Ok(bytes)) => {
                    buf[..bytes.len()].copy_from_slice(&bytes);
                    Ok(bytes.len())
                }
                Some(Err(err)) => Err(err),
            }
        }
    }

    /// Records what the loop did; closes on a read of `"close"`, fails on
    /// `"fail"`, raises the stop flag on `"stop"`.
    struct Recorder<'a> {
        buf: [u8; 16],
        log: Vec<String>,
        stop: &'a AtomicBool,
    }

    #[derive(Debug, PartialEq)]
    enum TestError {
        Read(io::ErrorKind),
        Failed,
    }

    impl From<ReadError> for TestError {
        fn from(err: ReadError) -> Self {
            TestError::Read(err.0.kind())
        }
    }

    impl Protocol for Recorder<'_> {
        type Error = TestError;
        fn spare(&mut self) -> &mut [u8] {
            &mut self.buf
        }
        fn on_read(&mut self, n: usize) -> Result<Flow, TestError> {
            let got = String::from_utf8_lossy(&self.buf[..n]).into_owned();
            self.log.push(format!("read {got}"));
            match got.as_str() {
                "close" => Ok(Flow::Close),
                "fail" => Err(TestError::Failed),
                "stop" => {
                    self.stop.store(true, Ordering::Relaxed);
                    Ok(Flow::Continue)
                }
                _ => Ok(Flow::Continue),
            }
        }
        fn on_tick(&mut self) -> Result<(), TestError> {
            self.log.push("tick".into());
            Ok(())
        }
        fn finish(&mut self, end: End) -> Result<(), TestError> {
            self.log.push(format!("finish {end:?}"));
            Ok(())
        }
    }

    fn run(script: Vec<io::Result<Vec<u8>>>) -> (Result<(), TestError>, Vec<String>) {
        let stop = AtomicBool::new(false);
        let mut recorder = Recorder {
            buf: [0; 16],
            log: Vec::new(),
            stop: &stop,
        };
        let result = serve(&mut Script(script.into()), &stop, &mut recorder);
        (result, recorder.log)
    }

    fn bytes(text: &str) -> io::Result<Vec<u8>> {
        Ok(text.as_bytes().to_vec())
    }

    #[test]
    fn timeouts_and_interrupts_are_idle_and_the_end_is_finished() {
        let (result, log) = run(vec![
            bytes("a"),
            Err(io::ErrorKind::WouldBlock.into()),
            Err(io::ErrorKind::TimedOut.into()),
            Err(io::ErrorKind::Interrupted.into()),
            bytes("b"),
        ]);
        assert_eq!(result, Ok(()));
        assert_eq!(
            log,
            [
                "read a",
                "tick",
                "tick",
                "tick",
                "tick",
                "read b",
                "tick",
                "finish Eof"
            ]
        );
    }

    #[test]
    fn a_reset_still_finishes_what_arrived_and_returns_the_error() {
        let (result, log) = run(vec![bytes("a"), Err(io::ErrorKind::ConnectionReset.into())]);
        assert_eq!(result, Err(TestError::Read(io::ErrorKind::ConnectionReset)));
        assert_eq!(log, ["read a", "tick", "finish Failed"]);
    }

    #[test]
    fn close_stop_and_failure_end_the_loop_and_are_finished() {
        let (result, log) = run(vec![bytes("close"), bytes("never")]);
        assert_eq!(result, Ok(()));
        assert_eq!(log, ["read close", "finish Closed"]);

        let (result, log) = run(vec![bytes("stop"), bytes("never")]);
        assert_eq!(result, Ok(()));
        assert_eq!(log, ["read stop", "tick", "finish Stopped"]);

        let (result, log) = run(vec![bytes("fail"), bytes("never")]);
        assert_eq!(result, Err(TestError::Failed));
        assert_eq!(log, ["read fail", "finish Failed"]);
    }
}
