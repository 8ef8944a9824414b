//! The LogQL parser of the Loki read API: never panics; whatever it
//! accepts prints to a text it reads back into the same tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_query::logql::{parse, parse_pipeline, parse_selector};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(expr) = parse(text) {
        let printed = expr.to_string();
        assert_eq!(parse(&printed).as_ref(), Ok(&expr), "{printed}");
    }
    let _ = parse_pipeline(text);
    let _ = parse_selector(text);
});
