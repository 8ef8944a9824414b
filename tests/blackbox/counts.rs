//! `/histogram` and `/topics` (and `sluice query --histogram`): counts per
//! time bucket and per topic equal a model computed from the lines sent,
//! on one node (from block metadata and from a scan) and across a cluster.

use serde_json::Value;

use crate::{cluster_checks::*, cluster_harness::*, harness::*};

/// Syslog lines (RFC 5424) one second apart from `base_ms`, of the
/// topics `web`, `db` and `cron` in turn, every seventh holding `ERROR`;
/// with each line's time, topic and whether it holds `ERROR`.
fn syslog_lines(base_ms: u64, n: u64) -> (Vec<u8>, Vec<(u64, &'static str, bool)>) {
    let mut out = Vec::new();
    let mut model = Vec::new();
    for i in 0..n {
        let ms = base_ms + i * 1_000;
        let topic = ["web", "db", "cron"][(i % 3) as usize];
        let error = i % 7 == 0;
        let time = jiff::Timestamp::from_millisecond(ms as i64).unwrap();
        out.extend_from_slice(
            format!(
                "<14>1 {} host1 {topic} - - - request {i} {}\n",
                time.strftime("%Y-%m-%dT%H:%M:%S.%3fZ"),
                if error { "ERROR failed" } else { "INFO ok" }
            )
            .as_bytes(),
        );
        model.push((ms, topic, error));
    }
    (out, model)
}

/// Counts per bucket of the model, as the contract defines buckets.
fn model_buckets(
    model: &[(u64, &str, bool)],
    from: u64,
    to: u64,
    buckets: u64,
    keep: impl Fn(&(u64, &str, bool)) -> bool,
) -> Vec<u64> {
    let step = (to - from).div_ceil(buckets).max(1);
    let n = ((to - from) / step + 1).min(buckets);
    let mut counts = vec![0; n as usize];
    for record in model.iter().filter(|r| keep(r)) {
        if record.0 >= from && record.0 <= to {
            // `to` itself is in the last bucket.
            let k = (((record.0 - from) / step) as usize).min(counts.len() - 1);
            counts[k] += 1;
        }
    }
    counts
}

fn get_json(api: &str, path: &str) -> Value {
    let (status, body) = http_get(api, path).unwrap_or_else(|| panic!("{path}: no answer"));
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

fn counts_of(histogram: &Value) -> Vec<u64> {
    histogram["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .collect()
}

/// Check `/histogram` and `/topics` on `api` against the model.
fn check_counts(api: &str, model: &[(u64, &str, bool)], base: u64, nodes: u64) {
    let (from, to) = (base + 500, base + 4_321_000);
    for (buckets, query, keep) in [
        (7u64, "", None),
        (60, "", None),
        (13, "&q=ERROR", None),
        (5, "&topic=db", Some("db")),
    ] {
        let path = format!("/histogram?from={from}&to={to}&buckets={buckets}{query}");
        let got = get_json(api, &path);
        let want = model_buckets(model, from, to, buckets, |r| {
            keep.is_none_or(|t| r.1 == t) && (query != "&q=ERROR" || r.2)
        });
        assert_eq!(counts_of(&got), want, "{path}: {got}");
        assert_eq!(got["total"], want.iter().sum::<u64>(), "{got}");
        assert_eq!(got["from_ms"], from);
        assert_eq!(got["step_ms"], (to - from).div_ceil(buckets));
        assert_eq!(
            got["buckets"][1]["start_ms"],
            from + (to - from).div_ceil(buckets)
        );
        assert_eq!(got["complete"], true, "{got}");
        assert_eq!(got["nodes_queried"], nodes, "{got}");
        assert_eq!(got["nodes_failed"], serde_json::json!([]), "{got}");
    }
    let topics = get_json(api, &format!("/topics?from={from}&to={to}"));
    let count = |t: &str| {
        model
            .iter()
            .filter(|r| r.1 == t && r.0 >= from && r.0 <= to)
            .count() as u64
    };
    assert_eq!(
        topics["topics"],
        serde_json::json!([
            {"topic": "cron", "records": count("cron")},
            {"topic": "db", "records": count("db")},
            {"topic": "web", "records": count("web")},
        ]),
        "{topics}"
    );
    assert_eq!(topics["complete"], true, "{topics}");
}

#[test]
fn histogram_and_topics_count_what_was_sent_from_block_metadata_and_scans() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        dir.path(),
        &[
            "--compact-target",
            "1MiB",
            "--maintenance-interval",
            "100ms",
        ],
    );
    // Two hours ago, on a whole second.
    let base = (jiff::Timestamp::now().as_millisecond() as u64 - 7_200_000) / 1_000 * 1_000;
    let (lines, model) = syslog_lines(base, 6_000);
    send_and_wait_close(&node.syslog, &lines);
    node.wait_records(6_000);
    let store = node.data().join("store");
    wait_for("every store segment to be a block file", || {
        let segments = store_segments(&store);
        (!segments.is_empty() && segments.iter().all(|p| is_block_file(p))).then_some(())
    });
    check_counts(&node.api, &model, base, 1);

    // The CLI: JSON as the endpoint answers it, and a chart of one row a
    // bucket.
    let (from, to) = ((base + 500).to_string(), (base + 4_321_000).to_string());
    let range = ["--from", from.as_str(), "--to", to.as_str()];
    let out = node.query(&[&range[..], &["--histogram", "--buckets", "7", "--json"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        counts_of(&json),
        model_buckets(&model, base + 500, base + 4_321_000, 7, |_| true)
    );
    let out = std::process::Command::new(&*BIN)
        .args(["query", "--api", &node.api, "--histogram", "--buckets", "7"])
        .args(range)
        .env("COLUMNS", "70")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let chart = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<&str> = chart.lines().collect();
    assert_eq!(rows.len(), 8, "{chart}");
    assert!(rows.iter().all(|r| r.len() <= 70), "{chart}");
    assert!(rows[0].contains('#'), "{chart}");

    // Bad parameters are explained.
    let (status, body) = http_get(&node.api, "/histogram?buckets=5000").unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("ask for 1 to 1000"), "{body}");
}

#[test]
fn histogram_and_topics_sum_every_node_of_a_cluster() {
    let nodes = start_cluster(&["ingest", "store", "store"], &[]);
    let base = (jiff::Timestamp::now().as_millisecond() as u64 - 7_200_000) / 1_000 * 1_000;
    let (lines, model) = syslog_lines(base, 3_000);
    // Half at a time, so both stores are likely to take some.
    let half = lines_of(&lines).len() / 2;
    let all = lines_of(&lines);
    for part in [&all[..half], &all[half..]] {
        let mut bytes = Vec::new();
        for line in part {
            bytes.extend_from_slice(line);
            bytes.push(b'\n');
        }
        send_and_wait_close(&nodes[0].syslog(), &bytes);
    }
    // Counts cannot drop copies: wait until the stores hold everything
    // and the ingester nothing.
    wait_until("the stores to hold every record", || {
        let (code, stats) = nodes[1].query_stats(&[]);
        if code == 0 && stats["records_matched"] == 3_000 && records_on(&stats, &nodes[0].id()) == 0
        {
            Ok(())
        } else {
            Err(stats.to_string())
        }
    });
    for node in &nodes {
        check_counts(&node.api(), &model, base, 3);
    }
    // One node's part alone.
    let (from, to) = (base + 500, base + 4_321_000);
    let mut parts = 0;
    for node in &nodes {
        let part = get_json(
            &node.api(),
            &format!("/histogram?from={from}&to={to}&buckets=7&scope=local"),
        );
        assert_eq!(part["nodes_queried"], 1);
        parts += part["total"].as_u64().unwrap();
    }
    assert_eq!(
        parts,
        model.iter().filter(|r| r.0 >= from && r.0 <= to).count() as u64
    );

    // A paused store is named once it is silent for the node timeout.
    nodes[2].sigstop();
    let paused = get_json(
        &nodes[0].api(),
        &format!("/histogram?from={from}&to={to}&buckets=7&node_timeout=300ms"),
    );
    nodes[2].sigcont();
    assert_eq!(paused["complete"], false, "{paused}");
    assert_eq!(paused["nodes_failed"][0]["node"], nodes[2].id(), "{paused}");
    let reason = paused["nodes_failed"][0]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(["timeout", "dead"].contains(&reason.as_str()), "{paused}");

    // A store that cannot answer is named, as /query names it, and a
    // strict count fails.
    nodes[2].kill9();
    let path = format!("/histogram?from={from}&to={to}&buckets=7");
    let partial = get_json(&nodes[0].api(), &path);
    assert_eq!(partial["complete"], false, "{partial}");
    assert_eq!(
        partial["nodes_failed"][0]["node"],
        nodes[2].id(),
        "{partial}"
    );
    let reason = partial["nodes_failed"][0]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        ["unreachable", "dead"].contains(&reason.as_str()),
        "{partial}"
    );
    let topics = get_json(&nodes[0].api(), &format!("/topics?from={from}&to={to}"));
    assert_eq!(topics["complete"], false, "{topics}");
    let (status, body) = http_get(&nodes[0].api(), &format!("{path}&consistency=strict")).unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("consistency strict"), "{body}");
}
