//! The load generator of `bench/bench.py loki-push`: the same lines sent
//! to a node as Loki pushes (protobuf in a snappy block, as Alloy sends
//! them) or as batches of sluice's batch protocol (guarantee `write`, the
//! same meaning as a push's 204), in batches of BATCH lines over
//! CONNECTIONS connections, each waiting for every answer before its next
//! request. Requests are encoded before the clock starts, so the time is
//! the node's and the network's, not the encoder's. Prints one JSON line.
//!
//! ```text
//! cargo run --release -p sluice-push --example push_load -- loki|batch HOST:PORT FILE BATCH CONNECTIONS
//! ```

use std::{
    io::{BufRead, BufReader, Write},
    net::TcpStream,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use prost::Message;
use sluice_push::loki::proto::{EntryAdapter, PushRequest, StreamAdapter, Timestamp};
use sluice_record::wire::{BatchBuilder, Guarantee, Reply, parse_reply};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, addr, file, batch, connections] = args.as_slice() else {
        eprintln!("usage: push_load loki|batch HOST:PORT FILE BATCH CONNECTIONS");
        std::process::exit(2);
    };
    let batch: usize = batch.parse().expect("BATCH is a number");
    let connections: usize = connections.parse().expect("CONNECTIONS is a number");
    let lines: Vec<Vec<u8>> = BufReader::new(std::fs::File::open(file).expect("open FILE"))
        .split(b'\n')
        .map(|l| l.expect("read FILE"))
        .collect();
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let requests: Vec<Vec<u8>> = lines
        .chunks(batch.max(1))
        .enumerate()
        .map(|(seq, chunk)| match mode.as_str() {
            "loki" => loki_request(chunk, now_ns + seq as u64 * 1_000_000),
            "batch" => batch_request(chunk, seq as u64),
            other => panic!("unknown mode {other}: loki or batch"),
        })
        .collect();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for c in 0..connections.max(1) {
            let (requests, mode, addr) = (&requests, mode.as_str(), addr.as_str());
            scope.spawn(move || {
                let mut stream = TcpStream::connect(addr).expect("connect");
                stream.set_nodelay(true).unwrap();
                let mut reader = BufReader::with_capacity(64 << 10, stream.try_clone().unwrap());
                for request in requests.iter().skip(c).step_by(connections.max(1)) {
                    if mode == "loki" {
                        let head = format!(
                            "POST /loki/api/v1/push HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
                            request.len()
                        );
                        stream.write_all(head.as_bytes()).unwrap();
                        stream.write_all(request).unwrap();
                        read_http_answer(&mut reader);
                    } else {
                        stream.write_all(request).unwrap();
                        let mut line = Vec::new();
                        reader.read_until(b'\n', &mut line).unwrap();
                        assert!(
                            matches!(parse_reply(&line), Some(Reply::Ok { .. })),
                            "batch refused: {}",
                            String::from_utf8_lossy(&line)
                        );
                    }
                }
            });
        }
    });
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{{\"mode\":\"{mode}\",\"events\":{},\"bytes\":{bytes},\"requests\":{},\"secs\":{secs:.6}}}",
        lines.len(),
        requests.len()
    );
}

fn loki_request(lines: &[Vec<u8>], ns: u64) -> Vec<u8> {
    let request = PushRequest {
        streams: vec![StreamAdapter {
            labels: Bytes::from_static(b"{job=\"bench\", service_name=\"testsvc\"}"),
            entries: lines
                .iter()
                .enumerate()
                .map(|(i, line)| {
                    let t = ns + i as u64;
                    EntryAdapter {
                        timestamp: Some(Timestamp {
                            seconds: (t / 1_000_000_000) as i64,
                            nanos: (t % 1_000_000_000) as i32,
                        }),
                        line: Bytes::copy_from_slice(line),
                        structured_metadata: vec![],
                        parsed: vec![],
                    }
                })
                .collect(),
            hash: 0,
        }],
        format: Bytes::new(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .unwrap()
}

fn batch_request(lines: &[Vec<u8>], seq: u64) -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    for line in lines {
        builder.push(None, line);
    }
    let mut out = Vec::new();
    builder.encode(&mut out, seq, "bench", Guarantee::Write, None);
    out
}

/// Read one HTTP answer; it must be a 204.
fn read_http_answer(reader: &mut impl BufRead) {
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 204"), "push refused: {status}");
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        if header == "\r\n" || header.is_empty() {
            break;
        }
        if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
}
