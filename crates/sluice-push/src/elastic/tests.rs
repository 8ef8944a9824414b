use proptest::prelude::*;

use super::*;

const NOW: u64 = 1_733_011_200_000;

/// A record as emitted: topic, time, payload.
type Emitted = (String, u64, Vec<u8>);

fn run(
    body: &[u8],
    path_index: Option<&str>,
    limits: &Limits,
) -> Result<(Vec<BulkItem>, Vec<Emitted>), PushError> {
    let mut records = Vec::new();
    let mut next = 0u128;
    let (items, _) = decode(
        ContentEncoding::Identity,
        body,
        path_index,
        &BulkConfig::default(),
        limits,
        NOW,
        &mut |r| {
            records.push((
                String::from_utf8(r.topic.to_vec()).unwrap(),
                r.time_ms,
                r.payload.to_vec(),
            ));
            next += 1;
            Ulid(next)
        },
    )?;
    Ok((items, records))
}

#[test]
fn create_and_index_documents_become_records_of_their_index() {
    let body = concat!(
        "{\"create\":{\"_index\":\"filebeat-8.17.0\"}}\n",
        "{\"@timestamp\":\"2024-12-01T00:00:00.123Z\",\"message\":\"GET / 200\",\"host\":{\"name\":\"h\"}}\n",
        "{\"index\":{\"_type\":\"_doc\"}}\n",
        "{\"log\":\"from fluent bit\\n\",\"@timestamp\":\"2024-12-01T00:00:01\"}\n",
        "\n",
        "{\"index\":{}}\n",
        "{\"other\":1,\"timestamp\":1733011100000}\n",
    );
    let (items, records) = run(body.as_bytes(), Some("logs"), &Limits::default()).unwrap();
    assert_eq!(
        records,
        vec![
            (
                "filebeat-8.17.0".into(),
                1_733_011_200_123,
                b"GET / 200".to_vec()
            ),
            (
                "logs".into(),
                1_733_011_201_000,
                b"from fluent bit".to_vec()
            ),
            (
                "logs".into(),
                1_733_011_100_000,
                b"{\"other\":1,\"timestamp\":1733011100000}".to_vec()
            ),
        ]
    );
    assert_eq!(items.len(), 3);
    assert_eq!(items[1].action, Action::Index);
    let mut out = Vec::new();
    write_response(5, &items, &mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.starts_with(&format!(
            "{{\"took\":5,{OK_PREFIX}{{\"create\":{{\"_index\":\"filebeat-8.17.0\",\"_id\":\""
        )),
        "{text}"
    );
    let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed["items"][1]["index"]["status"], 201);
    assert_eq!(parsed["items"][2]["index"]["_index"], "logs");
}

#[test]
fn failed_items_keep_their_place_and_set_errors() {
    let body = concat!(
        "{\"create\":{}}\n",
        "{\"message\":\"no index\"}\n",
        "{\"delete\":{\"_index\":\"x\",\"_id\":\"1\"}}\n",
        "{\"create\":{\"_index\":\"x\"}}\n",
        "not json\n",
        "{\"create\":{\"_index\":\"x\"}}\n",
        "{\"message\":\"kept\"}\n",
    );
    let (items, records) = run(body.as_bytes(), None, &Limits::default()).unwrap();
    assert_eq!(records.len(), 1);
    let statuses: Vec<_> = items
        .iter()
        .map(|i| i.outcome.as_ref().map(|_| 201).unwrap_or_else(|e| e.status))
        .collect();
    assert_eq!(statuses, [400, 400, 400, 201]);
    let mut out = Vec::new();
    write_response(0, &items, &mut out);
    let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(parsed["errors"], true);
    assert_eq!(
        parsed["items"][2]["create"]["error"]["type"],
        "document_parsing_exception"
    );
    assert!(parsed["items"][1]["delete"].is_object());
}

#[test]
fn malformed_action_lines_refuse_the_request() {
    for (body, why) in [
        ("{\"bogus\":{}}\n{}\n", "unknown action"),
        ("[1]\n", "malformed action"),
        ("{\"create\":{},\"index\":{}}\n{}\n", "one action"),
        ("{\"create\":{\"_index\":\"x\"}}\n", "no document line"),
    ] {
        let err = run(body.as_bytes(), None, &Limits::default()).unwrap_err();
        assert!(err.to_string().contains(why), "{body:?}: {err}");
        assert!(!err.too_large());
    }
    let limits = Limits {
        max_entries: 1,
        ..Limits::default()
    };
    let body = "{\"index\":{}}\n{}\n{\"index\":{}}\n{}\n";
    assert_eq!(
        run(body.as_bytes(), Some("x"), &limits).unwrap_err(),
        PushError::TooManyEntries { limit: 1 }
    );
}

#[test]
fn time_fields_read_as_elasticsearch_reads_dates() {
    use serde_json::json;
    for (value, ms) in [
        (json!("2024-12-01T00:00:00Z"), Some(1_733_011_200_000)),
        (json!("2024-12-01T01:00:00+01:00"), Some(1_733_011_200_000)),
        (json!("2024-12-01T00:00:00.5"), Some(1_733_011_200_500)),
        (json!("2024-12-01"), Some(1_733_011_200_000)),
        (json!("1733011200000"), Some(1_733_011_200_000)),
        (json!(1733011200000u64), Some(1_733_011_200_000)),
        (json!("yesterday"), None),
        (json!(-1), None),
        (json!(null), None),
    ] {
        assert_eq!(parse_time(&value), ms, "{value}");
    }
}

proptest! {
    #[test]
    fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let limits = Limits { max_entries: 4, ..Limits::default() };
        if let Ok((items, _)) = run(&body, Some("x"), &limits) {
            prop_assert!(items.len() <= 4);
            let mut out = Vec::new();
            write_response(1, &items, &mut out);
            let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
            prop_assert_eq!(parsed["items"].as_array().unwrap().len(), items.len());
        }
    }

    /// Generated documents all come back, in order, with their messages.
    #[test]
    fn documents_round_trip(messages in proptest::collection::vec("[^\n\r]{0,20}", 0..20)) {
        let mut body = String::new();
        for m in &messages {
            body.push_str("{\"create\":{\"_index\":\"idx\"}}\n");
            body.push_str(&serde_json::json!({"message": m}).to_string());
            body.push('\n');
        }
        let (items, records) = run(body.as_bytes(), None, &Limits::default()).unwrap();
        prop_assert_eq!(items.len(), messages.len());
        let got: Vec<Vec<u8>> = records.into_iter().map(|r| r.2).collect();
        let want: Vec<Vec<u8>> = messages.iter().map(|m| m.as_bytes().to_vec()).collect();
        prop_assert_eq!(got, want);
    }
}
