//! Writes small valid block files of each layout, as seeds for the
//! `block_segment` fuzz target (from random bytes it rarely gets past the
//! footer checksum):
//!
//! ```sh
//! cargo run -p sluice-storage --example block_fuzz_seeds -- fuzz/seeds/block_segment
//! ```

use std::path::{Path, PathBuf};

use sluice_record::{Record, Ulid};
use sluice_storage::{
    Fs, MemFs, WorkerPool,
    block_segment::{BlockLayout, BlockWriter},
};

fn main() {
    let Some(dir) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: block_fuzz_seeds DIR");
        std::process::exit(2);
    };
    std::fs::create_dir_all(&dir).expect("create the seed directory");
    let workers = WorkerPool::inline();
    for (name, layout) in [
        ("2.5", BlockLayout::Sorted),
        ("2.5-in-order", BlockLayout::InOrder),
    ] {
        let fs = MemFs::new();
        let path = Path::new("/d/seg");
        fs.create_dir_all(Path::new("/d")).unwrap();
        let file = fs.create_new(path).unwrap();
        let mut writer = BlockWriter::new(file, workers.clone())
            .unwrap()
            .with_layout(layout);
        for i in 0..400u64 {
            let payload = format!(
                "level={} msg=\"abcdefgh done\" n={} {}",
                ["INFO", "ERROR"][(i % 7 == 0) as usize],
                i % 13,
                "x".repeat(60)
            );
            writer
                .push(Record {
                    id: Ulid::from_parts(1_000 + i, i as u128),
                    flags: (i % 50 == 0) as u8,
                    topic: if i % 3 == 0 { b"a" } else { b"b" },
                    payload: payload.as_bytes(),
                })
                .unwrap();
        }
        let (mut file, _) = writer.finish().unwrap();
        file.sync_data().unwrap();
        let bytes = fs.read_all(path).unwrap();
        std::fs::write(dir.join(format!("format-{name}.seg")), &bytes).expect("write a seed");
        println!("format {name}: {} bytes", bytes.len());
    }
}
