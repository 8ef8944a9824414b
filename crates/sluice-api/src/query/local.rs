//! A query answered from this node's own data: the scan runs on a
//! blocking thread and streams its records, in the response's format,
//! through a bounded channel of chunks ([`start_local`]); framed answers
//! also carry progress and keep-alive frames.

use std::{sync::Arc, time::Instant};

use axum::{http::StatusCode, response::Response};
use bytes::Bytes;
use sluice_query::{Query, Sources};
use sluice_record::Record;

use super::{
    CHUNK_BUFFER_BYTES, CHUNK_BYTES, CHUNK_LINGER, CHUNKS_IN_FLIGHT, Format, LINGER_CHECK_EVERY,
    PROGRESS_EVERY, local_scan, local_sources, query_error, report_corruption, stats_json,
    write_json, write_raw,
};
use crate::{ApiState, error};

/// Start `query` on this node, streaming its results in `format` through
/// the returned channel. What fails before the scan starts is answered as
/// an error response; with `alone`, the stats frame also carries the
/// cluster fields of a cluster of one.
pub(crate) async fn start_local(
    state: &ApiState,
    query: Query,
    format: Format,
    scanning: crate::admission::Scanning,
    alone: bool,
) -> Result<tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>, Response> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(CHUNKS_IN_FLIGHT);
    // The scan says whether the query could start before anything is
    // answered: an error then is a status and a message, not a cut stream.
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<Result<(), Response>>();
    // The id up to which every match was sent (down to which, newest
    // first): what a progress frame says.
    let backward = query.direction.is_backward();
    let start = match backward {
        false => sluice_record::Ulid::nil(),
        true => sluice_record::Ulid(u128::MAX),
    };
    let frontier = Arc::new(std::sync::Mutex::new(start));
    // Set, under its lock, before the last frame is sent: no progress
    // frame may follow the stats frame.
    let scan_done = Arc::new(std::sync::Mutex::new(false));
    // Told once `scan_done` is set: the progress task ends then, and with
    // it its hold on the channel, so the body ends with the last frame
    // rather than up to `PROGRESS_EVERY` later.
    let finished = Arc::new(tokio::sync::Notify::new());
    if format.framed() {
        let tx = tx.clone();
        let frontier = frontier.clone();
        let scan_done = scan_done.clone();
        let finished = finished.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(PROGRESS_EVERY) => {}
                    _ = finished.notified() => return,
                }
                let done = scan_done.lock().unwrap_or_else(|p| p.into_inner());
                if *done {
                    return;
                }
                let at = *frontier.lock().unwrap_or_else(|p| p.into_inner());
                let frame = sluice_query::frames::FrameWriter::new().progress(at);
                // A full channel means the reader is behind, not that this
                // node is silent: skip this one.
                if let Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) =
                    tx.try_send(Ok(frame))
                {
                    return;
                }
            }
        });
    }
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        let scan = local_scan(&state, &scanning);
        let mut sink = LocalSink {
            format,
            out: LocalSink::out_buffer(format),
            frames: sluice_query::frames::FrameWriter::with_target(CHUNK_BYTES),
            last_send: Instant::now(),
            unclocked: 0,
            client_gone: false,
            tx,
            frontier,
            backward,
        };
        let (fs, ingest_files) = match local_sources(&state) {
            Ok(sources) => sources,
            Err(e) => {
                scanning.end();
                let _ = started_tx.send(Err(error(StatusCode::INTERNAL_SERVER_ERROR, e)));
                return;
            }
        };
        let sources = Sources {
            store: state.store.as_ref().map(|s| s.dir()),
            ingest: &ingest_files,
            ..Sources::default()
        };
        let prepared = match sluice_query::prepare_sources(&*fs, sources, &query, &scan) {
            Ok(prepared) => prepared,
            Err(e) => {
                scanning.end();
                let _ = started_tx.send(Err(query_error(&e)));
                return;
            }
        };
        if started_tx.send(Ok(())).is_err() {
            // The client went away while the query was planned.
            scanning.end();
            return;
        }
        let stats = prepared.run(&mut sink);
        if let Some(store) = &state.store {
            report_corruption(store, &stats);
        }
        let LocalSink {
            out,
            mut frames,
            client_gone,
            tx,
            ..
        } = sink;
        // The body was dropped (the client went away), whether its channel
        // or its cancel flag told the scan first.
        if client_gone {
            scanning
                .cancel()
                .store(true, std::sync::atomic::Ordering::Release);
        }
        let cancelled = scanning.end();
        *scan_done.lock().unwrap_or_else(|p| p.into_inner()) = true;
        finished.notify_one();
        if client_gone || cancelled {
            return;
        }
        if !stats.failed_segments.is_empty() {
            tracing::warn!(failed = ?stats.failed_segments, "query skipped unreadable segments");
        }
        match format {
            Format::Raw | Format::Json => {
                if !out.is_empty() {
                    let _ = tx.blocking_send(Ok(Bytes::from(out)));
                }
            }
            Format::Frames | Format::Ids => {
                if let Some(frame) = frames.flush() {
                    let _ = tx.blocking_send(Ok(frame));
                }
                let mut json = stats_json(&stats);
                if alone {
                    crate::coordinate::add_alone_fields(&mut json);
                }
                let object = match json {
                    serde_json::Value::Object(map) => map,
                    _ => unreachable!("stats are an object"),
                };
                match frames.stats(&object) {
                    Ok(frame) => {
                        let _ = tx.blocking_send(Ok(frame));
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Ok(frames.error(&e.to_string())));
                    }
                }
            }
        }
    });
    match started_rx.await {
        Ok(Ok(())) => Ok(rx),
        Ok(Err(response)) => Err(response),
        Err(_) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the query's scan ended before it started",
        )),
    }
}

/// Where a local scan's records go: written in the response's format and
/// sent in chunks; for frames, progress is published for the keep-alive
/// task to send.
struct LocalSink {
    format: Format,
    out: Vec<u8>,
    frames: sluice_query::frames::FrameWriter,
    last_send: Instant,
    /// Records since the clock was last read for the linger: it is read
    /// once per [`LINGER_CHECK_EVERY`] (a read per record was 2% of a
    /// scan that sends many), and at every progress call.
    unclocked: u32,
    client_gone: bool,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    /// The id up to which every match was sent: what a progress frame says.
    frontier: Arc<std::sync::Mutex<sluice_record::Ulid>>,
    /// Newest first: the frontier moves down.
    backward: bool,
}

impl LocalSink {
    /// Send a chunk; with `covers`, every match up to that id is now sent.
    fn send(&mut self, chunk: Bytes, covers: Option<sluice_record::Ulid>) -> bool {
        self.last_send = Instant::now();
        self.unclocked = 0;
        if self.tx.blocking_send(Ok(chunk)).is_err() {
            self.client_gone = true;
            return false;
        }
        if let Some(id) = covers {
            self.advance_frontier(id);
        }
        true
    }

    /// Where raw or json lines are written until they are sent: room for a
    /// chunk and the record that passes it. Framed answers write frames
    /// instead and get none: when this buffer was over the node's mmap
    /// threshold, mapped on its own and unmapped when freed (a TLB flush
    /// on every core that ran the node), a rare id's query, whose answer is
    /// a few frames, spent about 7% of the node's samples on that one
    /// unused buffer.
    fn out_buffer(format: Format) -> Vec<u8> {
        match format {
            Format::Raw | Format::Json => Vec::with_capacity(CHUNK_BUFFER_BYTES),
            Format::Frames | Format::Ids => Vec::new(),
        }
    }

    /// Send the raw or json lines written so far as one chunk.
    fn send_out(&mut self) -> bool {
        let chunk = std::mem::replace(&mut self.out, Self::out_buffer(self.format));
        self.send(Bytes::from(chunk), None)
    }

    /// Whether the linger passed since the last send, asked once a record:
    /// the clock is read every [`LINGER_CHECK_EVERY`] calls.
    fn linger_passed(&mut self) -> bool {
        self.unclocked += 1;
        if self.unclocked < LINGER_CHECK_EVERY {
            return false;
        }
        self.unclocked = 0;
        self.last_send.elapsed() >= CHUNK_LINGER
    }

    fn advance_frontier(&self, id: sluice_record::Ulid) {
        let mut frontier = self.frontier.lock().unwrap_or_else(|p| p.into_inner());
        *frontier = match self.backward {
            false => (*frontier).max(id),
            true => (*frontier).min(id),
        };
    }
}

impl sluice_query::RecordSink for LocalSink {
    fn record(&mut self, record: &Record<'_>) -> bool {
        match self.format {
            Format::Raw => write_raw(&mut self.out, record),
            Format::Json => write_json(&mut self.out, record),
            Format::Frames | Format::Ids => {
                // Ids and topics, no payload: what a count needs.
                let id_only = Record {
                    id: record.id,
                    flags: record.flags,
                    topic: record.topic,
                    payload: b"",
                };
                let pushed = match self.format {
                    Format::Ids => self.frames.push(&id_only),
                    _ => self.frames.push(record),
                };
                match pushed {
                    Ok(Some(frame)) => return self.send(frame, Some(record.id)),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "a record does not fit a frame");
                        return false;
                    }
                }
                if self.linger_passed()
                    && let Some(frame) = self.frames.flush()
                {
                    return self.send(frame, Some(record.id));
                }
                return true;
            }
        }
        if self.out.len() >= CHUNK_BYTES || self.linger_passed() {
            return self.send_out();
        }
        true
    }

    fn progress(&mut self, done: sluice_record::Ulid) {
        if !self.format.framed() {
            // Sparse matches reach the client after the linger, not after
            // the next `LINGER_CHECK_EVERY` records.
            if !self.out.is_empty() && self.last_send.elapsed() >= CHUNK_LINGER {
                self.send_out();
            }
            return;
        }
        // A progress frame may claim only what was sent: with records
        // still in the open frame, send them first, but no more often than
        // the linger (a scan that matches little reaches here often).
        if self.frames.has_pending() {
            if self.last_send.elapsed() < CHUNK_LINGER {
                return;
            }
            if let Some(frame) = self.frames.flush()
                && !self.send(frame, None)
            {
                return;
            }
        }
        self.advance_frontier(done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only raw and json answers write lines to a buffer; a framed answer
    /// (every CLI query) must not map and unmap one it never writes.
    #[test]
    fn only_line_answers_get_a_line_buffer() {
        for format in [Format::Frames, Format::Ids] {
            assert_eq!(LocalSink::out_buffer(format).capacity(), 0);
        }
        for format in [Format::Raw, Format::Json] {
            assert!(LocalSink::out_buffer(format).capacity() > CHUNK_BYTES);
        }
    }
}
