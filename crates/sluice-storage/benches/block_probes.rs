//! Probes of the block file writer and reader: what a layout costs and
//! saves on real lines. Not tests (they assert nothing); each prints the
//! figures BENCHMARKS.md quotes.
//!
//! ```sh
//! cargo bench -p sluice-storage --bench block_probes -- write-throughput
//! cargo bench -p sluice-storage --bench block_probes -- layout FILE [--in-order] [--literals ERROR,\" 503 \"] [--dump OUT]
//! cargo bench -p sluice-storage --bench block_probes -- slice-build FILE
//! ```
//!
//! `FILE` holds log lines, one per line, e.g. from `sluice testsvc --rate 0
//! --count 300000 > lines.txt`.

use std::{path::Path, sync::Arc, time::Instant};

use sluice_record::{Record, Ulid};
use sluice_storage::{
    Fs, MemFs, RecordCursor, WorkerPool,
    block_segment::{
        BlockCursor, BlockLayout, BlockSegment, BlockWriter, ZSTD_LEVEL, block_compressor,
    },
    term_filter::sliced::SliceBuilder,
};

const USAGE: &str = "usage: block_probes write-throughput | layout FILE [--in-order] [--literals A,B] [--dump OUT] | slice-build FILE";

fn main() {
    // `cargo bench` adds `--bench`; the probes take their own arguments.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let workers =
        WorkerPool::new(sluice_storage::workers::default_workers()).expect("start the worker pool");
    match args.first().map(String::as_str) {
        Some("write-throughput") => write_throughput(&workers),
        Some("layout") => layout(&args[1..], &workers),
        Some("slice-build") => slice_build(&args[1..]),
        // `cargo bench` with no probe named: say what there is.
        _ => eprintln!("{USAGE}"),
    }
}

/// The lines of `path`, or an explanation.
fn read_lines(path: Option<&String>) -> Vec<u8> {
    let Some(path) = path else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    std::fs::read(path).unwrap_or_else(|e| {
        eprintln!("block_probes: read {path}: {e}");
        std::process::exit(2)
    })
}

/// Where the probes write their block file, in memory.
const SEGMENT: &str = "/d/seg";

/// `lines` written as one block file of `layout` at [`SEGMENT`] in `fs`.
fn write_file(fs: &MemFs, lines: &[&[u8]], layout: BlockLayout, workers: &Arc<WorkerPool>) -> u64 {
    let path = Path::new(SEGMENT);
    fs.create_dir_all(path.parent().unwrap()).unwrap();
    let _ = fs.remove_file(path);
    let file = fs.create_new(path).unwrap();
    let mut writer = BlockWriter::new(file, workers.clone())
        .unwrap()
        .with_layout(layout);
    for (i, line) in lines.iter().enumerate() {
        writer
            .push(Record {
                // As one connection at full speed: one lane, counting up.
                id: Ulid::from_parts(1_000_000 + i as u64 / 1000, (1 << 60) + i as u128),
                flags: 0,
                topic: b"default",
                payload: line,
            })
            .unwrap();
    }
    let (mut file, len) = writer.finish().unwrap();
    file.sync_data().unwrap();
    len
}

/// Synthetic request lines, each with its own trace id: how fast the filter,
/// zstd and the whole writer go.
fn write_throughput(workers: &Arc<WorkerPool>) {
    let trace_id = |i: u64| {
        format!(
            "{:032x}",
            (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) as u128 * 0x1_0000_0001
        )
    };
    let owned: Vec<Vec<u8>> = (0..200_000u64)
        .map(|i| format!("2026-11-21T06:00:00.{:03}Z INFO api: request handled path=/api/v1/users/{} status=200 duration_ms={}.{} trace_id={} user_agent=curl/8.5.0", i % 1000, i * 37 % 100_000, i % 900, i % 7, trace_id(i)).into_bytes())
        .collect();
    let lines: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    let mut filter = SliceBuilder::default();
    let t = Instant::now();
    filter.clear(true);
    for chunk in lines.chunks(600) {
        filter.start_frame();
        for l in chunk {
            filter.add(l);
        }
    }
    let filter_s = t.elapsed().as_secs_f64();
    let mut text = Vec::new();
    let t = Instant::now();
    let mut out = 0;
    let mut compressor = block_compressor(ZSTD_LEVEL).unwrap();
    for chunk in lines.chunks(1300) {
        text.clear();
        for l in chunk {
            text.extend_from_slice(l);
            text.push(b'\n');
        }
        out += compressor.compress(&text).unwrap().len();
    }
    let zstd_s = t.elapsed().as_secs_f64();
    let fs = MemFs::new();
    let t = Instant::now();
    let len = write_file(&fs, &lines, BlockLayout::Sorted, workers);
    let all_s = t.elapsed().as_secs_f64();
    let mib = bytes as f64 / 1048576.0;
    println!(
        "{mib:.0} MiB: filter {:.0} MiB/s, zstd-{ZSTD_LEVEL} {:.0} MiB/s (ratio {:.3}), writer {:.0} MiB/s (ratio {:.3})",
        mib / filter_s,
        mib / zstd_s,
        out as f64 / bytes as f64,
        mib / all_s,
        len as f64 / bytes as f64
    );
}

/// What a block file of the lines of FILE is made of, how fast it is
/// written (best of 3), and what a literal query decompresses.
fn layout(args: &[String], workers: &Arc<WorkerPool>) {
    let text = read_lines(args.first());
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let layout = match args.iter().any(|a| a == "--in-order") {
        true => BlockLayout::InOrder,
        false => BlockLayout::Sorted,
    };
    let lines: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let fs = MemFs::new();
    let (mut len, mut secs) = (0, f64::MAX);
    for _ in 0..3 {
        let t = Instant::now();
        len = write_file(&fs, &lines, layout, workers);
        secs = secs.min(t.elapsed().as_secs_f64());
    }
    let path = Path::new(SEGMENT);
    if let Some(dump) = option("--dump") {
        std::fs::write(dump, fs.read_all(path).unwrap()).unwrap();
    }
    let segment = BlockSegment::open(&fs, path).unwrap();
    let (mut data, mut meta, mut filter) = (0u64, 0u64, 0u64);
    for (i, b) in segment.blocks().iter().enumerate() {
        data += b.data_len as u64;
        meta += b.meta_len as u64;
        filter += segment.filter_bytes(i).unwrap();
    }
    let raw = text.len() as f64;
    println!(
        "{} blocks, file {:.3} of raw: data {:.3}, filter {:.3}, other meta {:.3}; {:.0} MiB/s",
        segment.blocks().len(),
        len as f64 / raw,
        data as f64 / raw,
        filter as f64 / raw,
        (meta - filter) as f64 / raw,
        raw / 1048576.0 / secs
    );
    let all_frames = {
        let mut cursor = BlockCursor::open(&fs, path, workers.clone()).unwrap();
        while cursor.advance().unwrap() {}
        cursor.frames_loaded()
    };
    for literal in option("--literals").unwrap_or("ERROR".into()).split(',') {
        let finder = Arc::new(memchr::memmem::Finder::new(literal.as_bytes()).into_owned());
        let mut cursor = BlockCursor::open(&fs, path, workers.clone())
            .unwrap()
            .with_literal(finder);
        let mut matched = 0;
        while cursor.advance().unwrap() {
            matched += 1;
        }
        println!(
            "{literal:?}: {matched} records; {} of {all_frames} frames read ({:.3}), {:.3} of the file",
            cursor.frames_loaded(),
            cursor.frames_loaded() as f64 / all_frames as f64,
            cursor.bytes_read() as f64 / len as f64
        );
    }
}

/// How fast the sliced filter takes the lines of FILE (best of 5).
fn slice_build(args: &[String]) {
    let text = read_lines(args.first());
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    let mut builder = SliceBuilder::default();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        builder.clear(true);
        for chunk in lines.chunks(300) {
            builder.start_frame();
            for l in chunk {
                builder.add(l);
            }
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "slice add: {:.0} MiB/s",
        text.len() as f64 / 1048576.0 / best
    );
}
