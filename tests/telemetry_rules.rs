//! Rules on the source tree for telemetry: metrics are emitted only from a
//! crate's `metrics.rs`, and every metric emitted there is described there
//! (its `# HELP` text and unit), and nothing is described that is never
//! emitted.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The library crates' and the binary's sources.
fn sources() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    for krate in std::fs::read_dir(root.join("crates")).unwrap() {
        let src = krate.unwrap().path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    assert!(files.len() > 50, "found the sources: {}", files.len());
    files
}

const EMITTERS: [&str; 3] = ["counter!(", "gauge!(", "histogram!("];

/// The metric names that `macro` (e.g. `counter!(`) is called with in `text`:
/// the string literal that follows it, on the same or the next line.
fn names_after(text: &str, macro_: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices(macro_) {
        // `describe_counter!(` also contains `counter!(`.
        let before = &text[..at];
        if !macro_.starts_with("describe_") && before.ends_with("describe_") {
            continue;
        }
        let rest = text[at + macro_.len()..].trim_start();
        let name = rest
            .strip_prefix('"')
            .and_then(|r| r.split_once('"'))
            .map(|(name, _)| name.to_string())
            .unwrap_or_else(|| panic!("a metric name as a literal after {macro_} in: {rest:.80}"));
        names.insert(name);
    }
    names
}

#[test]
fn metrics_are_emitted_only_from_metrics_rs() {
    let mut offenders = Vec::new();
    for file in sources() {
        if file.file_name().is_some_and(|n| n == "metrics.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if EMITTERS.iter().any(|m| line.contains(m)) && !line.contains("describe_") {
                offenders.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "emit metrics through a function in the crate's metrics.rs:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn every_metric_is_described_where_it_is_emitted() {
    let mut checked = 0;
    for file in sources() {
        if file.file_name().is_none_or(|n| n != "metrics.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let emitted: BTreeSet<String> = EMITTERS
            .iter()
            .flat_map(|m| names_after(&text, m))
            .collect();
        let described: BTreeSet<String> = EMITTERS
            .iter()
            .flat_map(|m| names_after(&text, &format!("describe_{m}")))
            .collect();
        let undescribed: Vec<_> = emitted.difference(&described).collect();
        let stale: Vec<_> = described.difference(&emitted).collect();
        assert!(
            undescribed.is_empty() && stale.is_empty(),
            "{}: emitted but not described: {undescribed:?}; described but never emitted: {stale:?}",
            file.display()
        );
        for name in &emitted {
            assert!(
                name.starts_with("sluice_"),
                "{}: {name} lacks the sluice_ prefix",
                file.display()
            );
        }
        checked += emitted.len();
    }
    assert!(checked > 60, "checked {checked} metrics");
}
