//! The framed query answer a coordinator reads from other nodes
//! (`format=frames`), on arbitrary bytes fed in arbitrary pieces, through
//! the merge: it must never panic, and whatever the merge lets out is in
//! strictly increasing id order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_query::{Frame, FrameDecoder, NodeMerge};

fuzz_target!(|data: &[u8]| {
    let mut decoder = FrameDecoder::new();
    let mut merge = NodeMerge::new(1);
    let split = data.first().copied().unwrap_or(1).max(1) as usize;
    let mut last = None;
    let mut drain = |merge: &mut NodeMerge| {
        while let Some(record) = merge.pop() {
            assert!(last.is_none_or(|l| record.id > l));
            last = Some(record.id);
        }
    };
    for piece in data.chunks(split) {
        decoder.push(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(Frame::Records(records))) => {
                    for record in &records {
                        assert!(record.topic.len() <= 255);
                    }
                    if merge.push_records(0, records).is_err() {
                        merge.fail(0);
                    }
                }
                Ok(Some(Frame::Progress(id))) => {
                    let _ = merge.progress(0, id);
                }
                Ok(Some(Frame::Stats(_) | Frame::Error(_))) => merge.finish(0),
                // Live tail only: a count of records the node dropped.
                Ok(Some(Frame::Lagged(_))) => {}
                Ok(None) => break,
                Err(_) => return,
            }
            drain(&mut merge);
        }
    }
    decoder.finish();
    while let Ok(Some(_)) = decoder.next_frame() {}
});
