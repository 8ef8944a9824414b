use super::*;
use sluice_record::{FLAG_TRUNCATED, Ulid};

#[test]
fn raw_and_json_lines() {
    let r = Record {
        id: Ulid::from_parts(1_795_240_800_000, 7),
        flags: FLAG_TRUNCATED,
        topic: b"app",
        payload: b"a \"q\" \xff",
    };
    let mut raw = Vec::new();
    write_raw(&mut raw, &r);
    assert_eq!(&raw[26..], b" app a \"q\" \xff\n");
    let mut json = Vec::new();
    write_json(&mut json, &r);
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["time"], "2026-11-21T06:00:00.000Z");
    assert_eq!(v["payload"], "a \"q\" \u{fffd}");
    assert_eq!(v["truncated"], true);
}

#[test]
fn bad_parameters_are_explained() {
    let p = QueryParams {
        from: Some("now".into()),
        to: Some("1h".into()),
        ..Default::default()
    };
    assert!(parse(&p).unwrap_err().to_string().contains("swap them"));
    let p = QueryParams {
        q: Some("(".into()),
        regex: true,
        ..Default::default()
    };
    assert!(parse(&p).unwrap_err().to_string().contains("invalid regex"));
    let p = QueryParams {
        direction: Some("backward".into()),
        ..Default::default()
    };
    assert!(
        parse(&p)
            .unwrap_err()
            .to_string()
            .contains("needs a limit of 1 to 100000 records, not none: pass limit=N")
    );
    let p = QueryParams {
        direction: Some("sideways".into()),
        ..Default::default()
    };
    assert!(
        parse(&p)
            .unwrap_err()
            .to_string()
            .contains("use forward or backward")
    );
}
