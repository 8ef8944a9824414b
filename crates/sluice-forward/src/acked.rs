//! Sending batches to ingesters with acks: the batch protocol (`sluice://`)
//! or the Fluentd forward protocol (`fluent://`).
//!
//! One sender thread per connection slot: in `failover` mode a single slot
//! walks the destination list, moving on when a connection fails; in
//! `balance` mode each destination has its own slot and all of them take
//! from the same queue.
//!
//! A connection keeps up to `window` batches in flight. A second thread
//! reads its replies: `OK <seq>` acknowledges a batch; `ERR <seq>` for a
//! refusal that a retry can cure (a full disk) puts the batch back, other
//! refusals count it as dropped (`rejected`). A fluent destination's
//! `{"ack": chunk}` acknowledges the batch its chunk id names
//! ([`chunk_id`]); fluent has no refusal. When the connection breaks,
//! every unacknowledged batch goes back to the front of the queue and is
//! sent again, on this destination or another, as the same bytes. Over
//! the batch protocol that keeps its base ULID, so the re-send cannot show
//! a record twice.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    net::TcpStream,
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::{defaults, metrics};
use sluice_record::wire::{Reply, parse_reply};

use crate::queue::{Batch, Queue};

/// Settings of every sender slot.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Batches in flight per connection, unacknowledged (at least 1).
    pub window: usize,
    /// The longest wait between rounds of connection attempts; the first
    /// is [`FIRST_BACKOFF`](defaults::FIRST_BACKOFF).
    pub max_backoff: Duration,
    /// What the destinations speak.
    pub protocol: Protocol,
}

/// What the destinations speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The batch protocol: `OK <seq> …` / `ERR <seq> …` lines.
    Sluice,
    /// The Fluentd forward protocol: `{"ack": chunk}` maps.
    Fluent,
}

/// The fluent `chunk` id of batch `seq`.
pub fn chunk_id(seq: u64) -> String {
    format!("sluice-{seq:x}")
}

fn seq_of_chunk(chunk: &[u8]) -> Option<u64> {
    let hex = std::str::from_utf8(chunk.strip_prefix(b"sluice-")?).ok()?;
    u64::from_str_radix(hex, 16).ok()
}

/// In-flight batches of one connection, by seq.
#[derive(Default)]
struct Window {
    batches: Mutex<(BTreeMap<u64, Arc<Batch>>, bool /* dead */)>,
    changed: Condvar,
}

/// Run one sender slot until `stop` is set. `destinations` is walked in
/// order on failure.
pub fn run_slot(
    config: SenderConfig,
    destinations: Vec<String>,
    queue: Arc<Queue>,
    stop: Arc<AtomicBool>,
) {
    let mut backoff = defaults::FIRST_BACKOFF;
    let mut index = 0;
    while !stop.load(Ordering::Relaxed) {
        let addr = &destinations[index % destinations.len()];
        index += 1;
        match connect(addr) {
            Ok(stream) => {
                tracing::debug!(addr, "connected to ingester");
                let delivered = serve_connection(stream, addr, &config, &queue, &stop);
                if delivered {
                    backoff = defaults::FIRST_BACKOFF;
                }
            }
            Err(err) => {
                metrics::connect_error();
                tracing::warn!(addr, error = %err, retry_in_ms = backoff.as_millis() as u64, "cannot connect to ingester");
            }
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        // Only back off once every destination has been tried.
        if index % destinations.len() == 0 {
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(config.max_backoff);
        }
    }
}

fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let stream = crate::connect::connect(addr, defaults::CONNECT_TIMEOUT)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Send batches on one connection until it fails or `stop` is set. Returns
/// whether any batch was acknowledged.
fn serve_connection(
    stream: TcpStream,
    addr: &str,
    config: &SenderConfig,
    queue: &Arc<Queue>,
    stop: &AtomicBool,
) -> bool {
    let window = Arc::new(Window::default());
    let acked_any = Arc::new(AtomicBool::new(false));
    let reader = match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return false,
    };
    let replies = {
        let (window, queue, acked_any, addr) = (
            window.clone(),
            queue.clone(),
            acked_any.clone(),
            addr.to_string(),
        );
        let protocol = config.protocol;
        std::thread::spawn(move || match protocol {
            Protocol::Sluice => read_replies(reader, &addr, &window, &queue, &acked_any),
            Protocol::Fluent => read_fluent_acks(reader, &addr, &window, &queue, &acked_any),
        })
    };
    let mut stream = stream;
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // Wait for room in the window (or the connection's death, or a
        // stop: a destination that never answers must not hold it up).
        {
            let mut guard = window.batches.lock().unwrap_or_else(|p| p.into_inner());
            while guard.0.len() >= config.window && !guard.1 && !stop.load(Ordering::Relaxed) {
                guard = window
                    .changed
                    .wait_timeout(guard, defaults::SENDER_WAIT)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            if guard.1 || stop.load(Ordering::Relaxed) {
                break;
            }
        }
        let Some(batch) = queue.take(defaults::SENDER_WAIT) else {
            if window.batches.lock().unwrap_or_else(|p| p.into_inner()).1 {
                break;
            }
            continue;
        };
        {
            let mut guard = window.batches.lock().unwrap_or_else(|p| p.into_inner());
            if guard.1 {
                drop(guard);
                queue.give_back(vec![batch]);
                break;
            }
            guard.0.insert(batch.seq, batch.clone());
        }
        if let Err(err) = stream.write_all(&batch.wire) {
            tracing::warn!(addr, error = %err, "connection to ingester broke; unacknowledged batches will be sent again");
            break;
        }
    }
    // Close, let the reply thread finish, and requeue what is unacked.
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = replies.join();
    let unacked: Vec<Arc<Batch>> = {
        let mut guard = window.batches.lock().unwrap_or_else(|p| p.into_inner());
        guard.1 = true;
        std::mem::take(&mut guard.0).into_values().collect()
    };
    if !unacked.is_empty() {
        metrics::reconnect();
    }
    queue.give_back(unacked);
    acked_any.load(Ordering::Relaxed)
}

/// The reply reader of a fluent connection: each `{"ack": chunk}` names a
/// batch by its chunk id. Fluent has no refusal: a bad frame closes the
/// connection, and its batches are sent again.
fn read_fluent_acks(
    mut stream: TcpStream,
    addr: &str,
    window: &Window,
    queue: &Queue,
    acked_any: &AtomicBool,
) {
    use std::io::Read;
    let mut buf = vec![0u8; defaults::REPLY_BUFFER_BYTES];
    let mut len = 0;
    'read: loop {
        if len == buf.len() {
            tracing::warn!(
                addr,
                "fluent destination sent an oversized reply; reconnecting"
            );
            break;
        }
        match stream.read(&mut buf[len..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
        let mut start = 0;
        loop {
            match sluice_fluent::decode_ack(&buf[start..len]) {
                Ok(Some((used, chunk))) => {
                    let seq = seq_of_chunk(chunk);
                    start += used;
                    let mut guard = window.batches.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(batch) = seq.and_then(|s| guard.0.remove(&s)) {
                        queue.acked(&batch);
                        acked_any.store(true, Ordering::Relaxed);
                    }
                    window.changed.notify_all();
                }
                Ok(None) => break,
                Err(err) => {
                    tracing::warn!(addr, error = %err, "unparseable ack from fluent destination; reconnecting");
                    break 'read;
                }
            }
        }
        buf.copy_within(start..len, 0);
        len -= start;
    }
    let mut guard = window.batches.lock().unwrap_or_else(|p| p.into_inner());
    guard.1 = true;
    window.changed.notify_all();
}

fn read_replies(
    stream: TcpStream,
    addr: &str,
    window: &Window,
    queue: &Queue,
    acked_any: &AtomicBool,
) {
    let mut reader = BufReader::with_capacity(defaults::REPLY_BUFFER_BYTES, stream);
    let mut line = Vec::with_capacity(128);
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let reply = parse_reply(line.strip_suffix(b"\n").unwrap_or(&line));
        let mut guard = window.batches.lock().unwrap_or_else(|p| p.into_inner());
        match reply {
            Some(Reply::Ok { seq, .. }) => {
                if let Some(batch) = guard.0.remove(&seq) {
                    queue.acked(&batch);
                    acked_any.store(true, Ordering::Relaxed);
                }
            }
            Some(Reply::Err {
                seq: Some(seq),
                reason,
            }) => {
                if let Some(batch) = guard.0.remove(&seq) {
                    if reason.starts_with("cannot ") {
                        // The ingester could not write (disk full, fsync
                        // failure): try again later, maybe elsewhere.
                        tracing::warn!(
                            addr,
                            seq,
                            reason,
                            "ingester could not store a batch; it will be sent again"
                        );
                        drop(guard);
                        queue.give_back(vec![batch]);
                        // Back off through a reconnect.
                        break;
                    }
                    tracing::error!(
                        addr,
                        seq,
                        records = batch.records,
                        reason,
                        "ingester refused a batch; its records are dropped and counted"
                    );
                    queue.rejected(&batch);
                }
            }
            Some(Reply::Err { seq: None, reason }) => {
                tracing::error!(addr, reason, "ingester closed the protocol");
                break;
            }
            Some(Reply::Pong) => {}
            None => {
                tracing::warn!(addr, reply = %String::from_utf8_lossy(&line), "unparseable reply from ingester");
                break;
            }
        }
        window.changed.notify_all();
    }
    let mut guard = window.batches.lock().unwrap_or_else(|p| p.into_inner());
    guard.1 = true;
    window.changed.notify_all();
}
