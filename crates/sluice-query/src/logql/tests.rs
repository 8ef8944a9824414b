use std::collections::BTreeMap;

use proptest::prelude::*;

use super::{
    eval::{RangeCounter, Series, Steps, Value, evaluate},
    select::{Selector, line_matcher, pipeline_text},
    *,
};

fn ok(text: &str) -> Expr {
    parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// What Grafana, logcli and users send parses, and prints back to a text
/// that parses into the same tree.
#[test]
fn client_queries_parse_and_print_back() {
    for text in [
        "vector(1)+vector(1)",
        r#"sum by (level, detected_level) (count_over_time({app="api"} | drop __error__[1m]))"#,
        r#"sum by (level, detected_level) (count_over_time({app="api"} |= `err` | drop __error__, __error_details__ [15000ms]))"#,
        r#"sum by (level) (count_over_time({job=~"a|b"}[$__auto_is_replaced_by_grafana]))"#,
        r#"{app="api", env!="dev"} |= "" |~ "(?i)timeout" != "debug" or "trace" !~ `^x`"#,
        r#"rate({app="api"}[5m])"#,
        r#"sum(rate({app="api"}[5m])) by (env)"#,
        r#"bytes_rate({app="api"}[1h30m])"#,
        r#"avg without (pod) (bytes_over_time({app="api"}[10s]))"#,
        r#"count(count_over_time({app="api"}[1m])) + 1"#,
        r#"max(count_over_time({app="api"}[1m] |= "x"))"#,
        r#"min by () (count_over_time(({app="api"} |= "x")[1m]))"#,
        "# a comment\n{app=\"a\\u00e9\\x41\\t\"} # another\n",
        "2 + vector(3) + (1 + 1)",
    ] {
        if text.contains("$__") {
            // Grafana replaces $__auto before sending; the raw text is no LogQL.
            assert!(parse(text).is_err());
            continue;
        }
        let tree = ok(text);
        let printed = tree.to_string();
        assert_eq!(ok(&printed), tree, "{text} printed as {printed}");
    }
    assert_eq!(
        ok(r#"sum(count_over_time({a="b"}[1m])) by (x)"#).to_string(),
        r#"sum by (x) (count_over_time({a="b"} [1m]))"#
    );
    let Expr::Log(log) = ok("{a=\"\\u00e9\\x41\\t\"}") else {
        panic!("a log query")
    };
    assert_eq!(log.selector[0].value, "éA\t");
}

/// What lies outside the subset is an error naming it and the subset.
#[test]
fn unsupported_queries_are_explained() {
    for (text, says) in [
        (r#"{app="api"} | json"#, "| json"),
        (r#"{app="api"} | logfmt | level="error""#, "| logfmt"),
        (r#"{app="api"} | level="error""#, "label filters"),
        (r#"{app="api"} | line_format "{{.x}}""#, "line_format"),
        (r#"{app="api"} |> "<_> x""#, "|>"),
        (r#"{app="api"} |= ip("1.2.3.4")"#, "ip()"),
        (r#"sum_over_time({a="b"} | unwrap x [1m])"#, "sum_over_time"),
        (r#"topk(3, count_over_time({a="b"}[1m]))"#, "topk"),
        (r#"count_over_time({a="b"}[1m] offset 1h)"#, "offset"),
        (r#"count_over_time({a="b"}[1m]) * 2"#, "operator"),
        (r#"count_over_time({a="b"}[1m]) - 2"#, "operator"),
        (r#"count_over_time({a="b"})"#, "needs a range"),
        (r#"{a="b"}[1m]"#, "range"),
        ("{}", "empty selector"),
        ("", "empty"),
        (r#"{a=~"("}"#, "invalid regex"),
        (r#"{a="b"} |~ "(""#, "invalid regex"),
        (r#"{a="b"} | drop pod"#, "drop pod"),
        (r#"{a="b"} + vector(1)"#, "log query cannot be added"),
        (r#"{a="b"#, "closing"),
        (r#"{a="\q"}"#, "unknown escape"),
        (r#"count_over_time({a="b"}[1q])"#, "duration"),
        (r#"count_over_time({a="b"}[0s])"#, "longer than 0"),
    ] {
        let e = parse(text).expect_err(text).to_string();
        assert!(e.contains(says), "{text}: {e}");
        assert!(e.contains("sluice supports this LogQL subset"), "{e}");
    }
    let deep = format!("{}vector(1){}", "sum(".repeat(200), ")".repeat(200));
    assert!(
        parse(&deep)
            .unwrap_err()
            .to_string()
            .contains("nests deeper")
    );
    let long = format!("{{a=\"{}\"}}", "x".repeat(MAX_QUERY_BYTES));
    assert!(parse(&long).is_err());
}

#[test]
fn durations_read_prometheus_units() {
    for (text, ms) in [
        ("5m", 300_000),
        ("1h30m", 5_400_000),
        ("250ms", 250),
        ("1d", 86_400_000),
        ("1y2w", 365 * 86_400_000 + 14 * 86_400_000),
        ("1m500ms", 60_500),
    ] {
        assert_eq!(parse_duration_ms(text), Ok(ms), "{text}");
    }
    for text in ["", "5", "m", "1m1h", "1.5s", "5m5m", "-1s"] {
        assert!(parse_duration_ms(text).is_err(), "{text}");
    }
}

#[test]
fn selectors_match_label_sets_of_topics() {
    let sel = |text: &str| {
        let Expr::Log(log) = ok(text) else {
            panic!("a log query")
        };
        Selector::new(&log.selector).unwrap()
    };
    let api_prod = br#"{app="api",env="prod"}"#;
    let api_dev = br#"{app="api",env="dev"}"#;
    let plain = b"web";
    let cases: [(&str, [bool; 3]); 8] = [
        (r#"{app="api"}"#, [true, true, false]),
        (r#"{app="api", env!="dev"}"#, [true, false, false]),
        (r#"{env=~"pro.*"}"#, [true, false, false]),
        // Anchored: "pro" alone does not match "prod".
        (r#"{env=~"pro"}"#, [false, false, false]),
        (r#"{env!~"prod|dev"}"#, [false, false, true]),
        (r#"{topic="web"}"#, [false, false, true]),
        // A missing label is "", Prometheus style.
        (r#"{env=""}"#, [false, false, true]),
        (r#"{app=~".+", env!="prod"}"#, [false, true, false]),
    ];
    for (text, want) in cases {
        let s = sel(text);
        let got = [
            s.matches_topic(api_prod),
            s.matches_topic(api_dev),
            s.matches_topic(plain),
        ];
        assert_eq!(got, want, "{text}");
    }
}

#[test]
fn line_filters_and_together() {
    let matcher = |text: &str| {
        let Expr::Log(log) = ok(text) else {
            panic!("a log query")
        };
        line_matcher(&log.pipeline).unwrap()
    };
    let m = matcher(r#"{a="b"} |= "GET" != "health" |~ "(?i)status=5\\d\\d" !~ "x+y""#);
    assert!(m.is_match(b"GET /x STATUS=503"));
    assert!(!m.is_match(b"GET /health status=503"));
    assert!(!m.is_match(b"POST /x status=503"));
    assert!(!m.is_match(b"GET /x status=404"));
    assert!(!m.is_match(b"GET /x status=500 xxy"));
    // The longest positive literal prunes.
    assert_eq!(m.required_literal().unwrap().needle(), b"GET");
    let any = matcher(r#"{a="b"} |= "error" or "fatal" or "a.b""#);
    assert!(any.is_match(b"x fatal") && any.is_match(b"a.b") && !any.is_match(b"axb"));
    assert!(matches!(matcher(r#"{a="b"} |= """#), Matcher::All));
    assert!(matches!(
        matcher(r#"{a="b"} |= "x" or "" | drop __error__"#),
        Matcher::All
    ));
    let none = matcher(r#"{a="b"} != "err" or "warn""#);
    assert!(none.is_match(b"ok") && !none.is_match(b"warn x"));
    // The pipeline's text reads back the same.
    let Expr::Log(log) = ok(r#"{a="b"} |= "x" or `y"` !~ "z" | drop __error__"#) else {
        panic!()
    };
    assert_eq!(
        parse_pipeline(&pipeline_text(&log.pipeline)).unwrap(),
        log.pipeline
    );
    assert_eq!(parse_pipeline("").unwrap(), vec![]);
}

use crate::Matcher;

fn range_of(text: &str) -> RangeAgg {
    let Expr::Metric(m) = ok(text) else { panic!() };
    m.ranges()[0].clone()
}

/// count_over_time over a known corpus equals counting each window by
/// hand, for windows equal to, shorter and longer than the step.
#[test]
fn count_over_time_equals_a_model() {
    let base = 1_800_000_000_000u64;
    // (ms offset, topic, line)
    let mut corpus = Vec::new();
    for i in 0..500u64 {
        let topic: &[u8] = match i % 3 {
            0 => br#"{app="api",env="prod"}"#,
            1 => br#"{app="api",env="dev"}"#,
            _ => b"web",
        };
        let line = if i % 4 == 0 {
            "level=error x"
        } else {
            "INFO y"
        };
        corpus.push((base + i * 997 % 120_000, topic, line));
    }
    for (range, step) in [
        ("1m", 60_000u64),
        ("30s", 60_000),
        ("2m", 20_000),
        ("7s", 3_000),
    ] {
        let agg = range_of(&format!(r#"count_over_time({{app="api"}}[{range}])"#));
        let steps = Steps::new(base + 30_000, base + 150_000, step).unwrap();
        let selector = Selector::new(&agg.log.selector).unwrap();
        let mut counter = RangeCounter::new(&agg, steps, false);
        let (from, to) = counter.scan_range_ms();
        for (ms, topic, line) in &corpus {
            if *ms >= from && *ms <= to && selector.matches_topic(topic) {
                counter.add(*ms, topic, line.as_bytes()).unwrap();
            }
        }
        let series = counter.finish();
        assert_eq!(series.len(), 2);
        for s in &series {
            for k in 0..steps.count {
                let t = steps.at(k);
                let want = corpus
                    .iter()
                    .filter(|(ms, topic, _)| {
                        *ms + agg.range_ms > t
                            && *ms <= t
                            && sluice_record::labels::Labels::from_topic(topic).get("env")
                                == s.labels.get("env").map(String::as_str)
                    })
                    .count();
                let got = s.points[k as usize].unwrap_or(0.0);
                assert_eq!(
                    got, want as f64,
                    "{range} step {step} at {k} {:?}",
                    s.labels
                );
                if want == 0 {
                    assert_eq!(s.points[k as usize], None);
                }
            }
        }
        // sum by (detected_level) splits by the line's level word.
        let text = format!(r#"sum by (detected_level) (count_over_time({{app="api"}}[{range}]))"#);
        let Expr::Metric(expr) = ok(&text) else {
            panic!()
        };
        let mut counter = RangeCounter::new(&agg, steps, expr.groups_by("detected_level"));
        for (ms, topic, line) in &corpus {
            if *ms >= from && *ms <= to && selector.matches_topic(topic) {
                counter.add(*ms, topic, line.as_bytes()).unwrap();
            }
        }
        let Value::Vector(by_level) =
            evaluate(&expr, steps, &mut std::iter::once(counter.finish())).unwrap()
        else {
            panic!()
        };
        let levels: Vec<&str> = by_level
            .iter()
            .map(|s| s.labels["detected_level"].as_str())
            .collect();
        assert_eq!(levels, ["error", "info"]);
    }
}

#[test]
fn vector_arithmetic_and_aggregations() {
    let steps = Steps::new(1_000, 3_000, 1_000).unwrap();
    let Expr::Metric(two) = ok("vector(1)+vector(1)") else {
        panic!()
    };
    assert_eq!(
        evaluate(&two, steps, &mut std::iter::empty()).unwrap(),
        Value::Vector(vec![Series {
            labels: BTreeMap::new(),
            points: vec![Some(2.0); 3]
        }])
    );
    let Expr::Metric(three) = ok("1 + 2") else {
        panic!()
    };
    assert_eq!(
        evaluate(&three, steps, &mut std::iter::empty()).unwrap(),
        Value::Scalar(3.0)
    );
    let Expr::Metric(sum) = ok("sum(1)") else {
        panic!()
    };
    assert!(evaluate(&sum, steps, &mut std::iter::empty()).is_err());
    let series = |env: &str, points: Vec<Option<f64>>| Series {
        labels: [
            ("env".to_string(), env.to_string()),
            ("app".into(), "a".into()),
        ]
        .into(),
        points,
    };
    let input = vec![
        series("prod", vec![Some(1.0), None, Some(5.0)]),
        series("dev", vec![Some(3.0), None, None]),
    ];
    for (op, want) in [
        ("sum", vec![Some(4.0), None, Some(5.0)]),
        ("count", vec![Some(2.0), None, Some(1.0)]),
        ("min", vec![Some(1.0), None, Some(5.0)]),
        ("max", vec![Some(3.0), None, Some(5.0)]),
        ("avg", vec![Some(2.0), None, Some(5.0)]),
    ] {
        let Expr::Metric(e) = ok(&format!(r#"{op} by (app) (rate({{a="b"}}[1s]))"#)) else {
            panic!()
        };
        let Value::Vector(out) = evaluate(&e, steps, &mut std::iter::once(input.clone())).unwrap()
        else {
            panic!()
        };
        assert_eq!(out.len(), 1, "{op}");
        assert_eq!(out[0].labels, [("app".to_string(), "a".to_string())].into());
        assert_eq!(out[0].points, want, "{op}");
    }
    let Expr::Metric(e) = ok(r#"sum without (app) (rate({a="b"}[1s]))"#) else {
        panic!()
    };
    let Value::Vector(out) = evaluate(&e, steps, &mut std::iter::once(input.clone())).unwrap()
    else {
        panic!()
    };
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|s| !s.labels.contains_key("app")));
}

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z .*|()]{0,8}",
        any::<String>().prop_map(|s| s.chars().take(6).collect()),
        Just("\"`\\\n\t".to_string()),
    ]
}

fn arb_ident() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,5}"
}

fn arb_log() -> impl Strategy<Value = LogExpr> {
    let matcher = (
        arb_ident(),
        prop_oneof![
            Just(MatchOp::Eq),
            Just(MatchOp::Ne),
            Just(MatchOp::Re),
            Just(MatchOp::NotRe)
        ],
        prop_oneof!["[a-z.*]{0,5}", arb_string()],
    )
        .prop_filter("a valid regex", |(_, op, v)| {
            !matches!(op, MatchOp::Re | MatchOp::NotRe)
                || regex::Regex::new(&format!("^(?:{v})$")).is_ok()
        })
        .prop_map(|(name, op, value)| LabelMatcher { name, op, value });
    let filter = (
        prop_oneof![
            Just(FilterOp::Contains),
            Just(FilterOp::NotContains),
            Just(FilterOp::Regex),
            Just(FilterOp::NotRegex)
        ],
        prop::collection::vec(arb_string(), 1..3),
    )
        .prop_filter("valid regexes", |(op, values)| {
            !matches!(op, FilterOp::Regex | FilterOp::NotRegex)
                || values.iter().all(|v| regex::Regex::new(v).is_ok())
        })
        .prop_map(|(op, values)| Stage::Line(LineFilter { op, values }));
    let stage = prop_oneof![
        4 => filter,
        1 => Just(Stage::Drop(vec!["__error__".into()])),
        1 => Just(Stage::Drop(vec!["__error__".into(), "__error_details__".into()])),
    ];
    (
        prop::collection::vec(matcher, 1..4),
        prop::collection::vec(stage, 0..4),
    )
        .prop_map(|(selector, pipeline)| LogExpr { selector, pipeline })
}

fn arb_grouping() -> impl Strategy<Value = Option<Grouping>> {
    prop::option::of(
        (any::<bool>(), prop::collection::vec(arb_ident(), 0..3))
            .prop_map(|(without, labels)| Grouping { without, labels }),
    )
}

fn arb_metric() -> impl Strategy<Value = MetricExpr> {
    let number =
        (0u32..1_000_000, 0u32..4).prop_map(|(n, scale)| n as f64 / 10f64.powi(scale as i32));
    let leaf = prop_oneof![
        (
            prop_oneof![
                Just(RangeOp::CountOverTime),
                Just(RangeOp::Rate),
                Just(RangeOp::BytesOverTime),
                Just(RangeOp::BytesRate)
            ],
            arb_log(),
            1u64..10_000_000_000,
            arb_grouping(),
        )
            .prop_map(|(op, log, range_ms, grouping)| MetricExpr::Range(RangeAgg {
                op,
                log,
                range_ms,
                grouping
            })),
        number.clone().prop_map(MetricExpr::VectorOf),
        number.prop_map(MetricExpr::Number),
    ];
    leaf.prop_recursive(4, 16, 2, |inner| {
        prop_oneof![
            (
                prop_oneof![
                    Just(VectorOp::Sum),
                    Just(VectorOp::Count),
                    Just(VectorOp::Min),
                    Just(VectorOp::Max),
                    Just(VectorOp::Avg)
                ],
                arb_grouping(),
                inner.clone()
            )
                .prop_map(|(op, grouping, inner)| MetricExpr::Vector {
                    op,
                    grouping,
                    inner: Box::new(inner)
                }),
            (inner.clone(), inner).prop_map(|(a, b)| MetricExpr::Add(Box::new(a), Box::new(b))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every tree prints to a text that parses back into it.
    #[test]
    fn printed_trees_parse_back(expr in prop_oneof![
        arb_log().prop_map(Expr::Log),
        arb_metric().prop_map(Expr::Metric),
    ]) {
        let text = expr.to_string();
        let parsed = parse(&text);
        prop_assert_eq!(parsed.as_ref(), Ok(&expr), "{}", text);
    }

    /// Any text: a tree (which prints to a text that parses back into it)
    /// or an error with a message; never a panic.
    #[test]
    fn any_text_parses_or_is_explained(text in prop_oneof![
        any::<String>(),
        "[{}()\\[\\]=!~|`\" a-z0-9,+#]{0,40}",
        prop::collection::vec(prop::sample::select(vec![
            "{", "}", "(", ")", "[1m]", "a=\"b\"", "|=", "!=", "|~", "!~", "\"x\"", "`y`", "or",
            "sum", "by", "(a)", "count_over_time", "rate", "vector(1)", "+", "1", ",", "| drop __error__",
            "without", "# c\n", " ",
        ]), 0..16).prop_map(|parts| parts.concat()),
    ]) {
        match parse(&text) {
            Ok(expr) => {
                let printed = expr.to_string();
                prop_assert_eq!(parse(&printed), Ok(expr), "{} printed as {}", text, printed);
            }
            Err(e) => prop_assert!(!e.message.is_empty()),
        }
    }
}
