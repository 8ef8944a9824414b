//! The web UI (`/ui/`) in headless Chromium, driven over W3C WebDriver
//! with plain HTTP (`ui_browser.rs`): Debian's `chromium` and
//! `chromium-driver`, which `scripts/setup-test-deps` installs; nothing is
//! downloaded. A missing browser fails the test (CI has one), it is not
//! skipped.
//!
//! Every wait polls the page's hooks (`body[data-state]`, `data-count`,
//! `data-testid`) under the harness deadline. One browser runs at a time.
//! Screenshots of each state go to `target/ui-screenshots/`.

use std::{
    io::{Read, Write},
    net::TcpStream,
    sync::Mutex,
};

use serde_json::{Value, json};

use crate::{harness::*, loopback::http_request, ui_browser::*};

/// The status a GET of `path` answers with, read from its first line only
/// (`/stream` never ends).
fn endpoint_status(addr: &str, path: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status from GET {path}: {head:?}"))
}

/// Fails with a clear message when this build lacks an endpoint a test
/// needs (issue 20's server part lands separately).
fn require_endpoint(node: &Node, path: &str, what: &str) {
    let status = endpoint_status(&node.api, path);
    assert!(
        status != 404,
        "GET {path} answered 404: this test needs {what} (issue 20's server part), \
         which this build does not serve yet"
    );
}

/// An ingeststore holding `lines` (topic `default`), all queryable.
fn node_with(lines: &[&str]) -> (tempfile::TempDir, Node) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let mut input = lines.join("\n").into_bytes();
    input.push(b'\n');
    send_and_wait_close(&node.fast, &input);
    node.wait_records(lines.len() as u64);
    (dir, node)
}

/// `/query?<params>&format=json` from the API: its records.
fn api_records(node: &Node, params: &str) -> Vec<Value> {
    let reply = http_request(&node.api, "GET", &format!("/query?{params}&format=json"))
        .expect("GET /query");
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ids(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

fn enc(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The range the page resolved for its last run, in Unix ms.
fn page_range(browser: &Browser) -> (u64, u64) {
    let range = browser.js(
        "const h = document.querySelector('[data-testid=histogram]').dataset;
         return [Number(h.fromMs), Number(h.toMs)];",
        json!([]),
    );
    (range[0].as_u64().unwrap(), range[1].as_u64().unwrap())
}

const XSS_SCRIPT: &str = "<script>window.__xss=1</script> ERROR script";
const XSS_IMG: &str = "<img src=x onerror=\"window.__xss=1\"> ERROR img";
const JSON_LINE: &str = r#"{"level":"ERROR","msg":"disk full","n":1}"#;

fn sample_lines() -> Vec<&'static str> {
    vec![
        "GET /a status=200 ok",
        "GET /b status=503 ERROR upstream",
        "worker ERROR disk full",
        JSON_LINE,
        "quiet line",
        XSS_SCRIPT,
        XSS_IMG,
    ]
}

#[test]
fn ui_query_shows_the_api_answer_highlighted_as_text_with_detail_and_context() {
    let (_dir, node) = node_with(&sample_lines());
    let browser = Browser::start("query");
    browser.goto(&format!("http://{}/ui/", node.api));
    browser.wait_state("idle");
    browser.screenshot("idle");

    browser.type_into("[data-testid=q]", "ERROR\u{E007}");
    browser.wait_state("done");
    browser.screenshot("done");

    let (from, to) = page_range(&browser);
    let expected = api_records(
        &node,
        &format!("q=ERROR&from={from}&to={to}&direction=backward&limit=100000"),
    );
    assert_eq!(expected.len(), 5);
    let rows = browser.rows();
    assert_eq!(
        browser.js(
            "return document.querySelector('[data-testid=results]').dataset.count;",
            json!([])
        ),
        "5"
    );
    assert_eq!(
        rows.iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>(),
        ids(&expected),
        "the rows are the API's answer, in its order"
    );
    for (row, record) in rows.iter().zip(&expected) {
        assert_eq!(row["payload"], record["payload"]);
        assert_eq!(row["time"], record["time"]);
        assert_eq!(row["topic"], "default");
        assert!(
            !row["marks"].as_array().unwrap().is_empty()
                && row["marks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|m| m == "ERROR"),
            "{row}"
        );
        assert_eq!(row["others"], 0, "only <mark>s inside a payload: {row}");
    }

    // Markup in log text is text: nothing ran, no element was made.
    assert_eq!(
        browser.js("return typeof window.__xss;", json!([])),
        "undefined"
    );
    assert_eq!(
        browser.js(
            "return document.querySelectorAll('[data-testid=results] img, \
             [data-testid=results] script').length;",
            json!([])
        ),
        0
    );
    let payloads: Vec<&str> = rows
        .iter()
        .map(|r| r["payload"].as_str().unwrap())
        .collect();
    assert!(payloads.contains(&XSS_SCRIPT) && payloads.contains(&XSS_IMG));

    // The plan before, the stats after.
    let plan = browser.js(
        "return document.querySelector('[data-testid=plan]').textContent;",
        json!([]),
    );
    let plan = plan.as_str().unwrap();
    assert!(
        plan.starts_with("reading ") && plan.ends_with(" on 1 node") && plan.contains(" segment"),
        "{plan}"
    );
    let stats = browser.js(
        "return document.querySelector('[data-testid=stats]').textContent;",
        json!([]),
    );
    assert!(
        stats.as_str().unwrap().starts_with("5 matched · 5 shown"),
        "{stats}"
    );
    assert_eq!(
        browser.js(
            "return document.querySelector('[data-testid=incomplete]').hidden;",
            json!([])
        ),
        true
    );

    // Without /histogram the bars count the streamed records, and say so.
    if endpoint_status(&node.api, "/histogram?from=1h") == 404 {
        let h = browser.js(
            "const h = document.querySelector('[data-testid=histogram]').dataset;
             return [h.source, h.counts.split(',').reduce((a, c) => a + Number(c), 0),
                     document.querySelector('[data-testid=histogram-note]').textContent];",
            json!([]),
        );
        assert_eq!(h[0], "client", "{h}");
        assert_eq!(h[1], 5, "{h}");
        assert!(
            h[2].as_str()
                .unwrap()
                .contains("counted from the results shown"),
            "{h}"
        );
    }

    // Expanding a JSON line pretty-prints it.
    let json_id = expected.iter().find(|r| r["payload"] == JSON_LINE).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    browser.js(
        "document.querySelector(`[data-testid=row][data-id=\"${arguments[0]}\"]`).click();",
        json!([json_id]),
    );
    let pretty = browser.wait_js(
        "the detail to show the record",
        "const d = document.querySelector('[data-testid=detail]');
         return !d.hidden && d.dataset.id === arguments[0] &&
           document.querySelector('[data-testid=detail-payload]').textContent;",
        json!([json_id]),
    );
    let value: Value = serde_json::from_str(JSON_LINE).unwrap();
    assert_eq!(pretty, serde_json::to_string_pretty(&value).unwrap());

    // Context: the lines around it on its topic, in id order.
    browser.js(
        "document.querySelector('[data-testid=context]').click();",
        json!([]),
    );
    let context = browser.wait_js(
        "the context lines",
        "const l = document.querySelector('[data-testid=context-list]');
         return l.dataset.ready && [...l.querySelectorAll('[data-testid=context-row]')]
           .map((r) => r.dataset.id);",
        json!([]),
    );
    let all = api_records(&node, "from=1h&topic=default");
    assert_eq!(context, json!(ids(&all)), "every line is within the window");
    browser.screenshot("detail-context");

    // The OS's dark setting turns the page dark.
    let background = "return getComputedStyle(document.body).backgroundColor;";
    assert_eq!(browser.js(background, json!([])), "rgb(255, 255, 255)");
    browser.cmd(
        "POST",
        "goog/cdp/execute",
        Some(json!({"cmd": "Emulation.setEmulatedMedia", "params": {
            "features": [{"name": "prefers-color-scheme", "value": "dark"}],
        }})),
    );
    assert_eq!(browser.js(background, json!([])), "rgb(21, 24, 28)");
    browser.screenshot("dark");
    browser.assert_no_page_errors();
}

#[test]
fn ui_state_round_trips_through_the_url() {
    let (_dir, node) = node_with(&sample_lines());
    let browser = Browser::start("url");
    let url = format!(
        "http://{}/ui/?q={}&regex=1&i=1&topic=default&from=15m",
        node.api,
        enc("DISK|upstream")
    );
    browser.goto(&url);
    browser.wait_state("done");
    let controls = browser.js(
        "const v = (id) => document.querySelector(`[data-testid=${id}]`);
         return [v('q').value, v('regex').checked, v('i').checked, v('topic').value,
                 v('from').value, v('to').value, v('tail').checked];",
        json!([]),
    );
    assert_eq!(
        controls,
        json!(["DISK|upstream", true, true, "default", "15m", "now", false])
    );
    let (from, to) = page_range(&browser);
    let expected = api_records(
        &node,
        &format!(
            "q={}&regex=true&i=true&topic=default&from={from}&to={to}&direction=backward&limit=100000",
            enc("DISK|upstream")
        ),
    );
    assert_eq!(expected.len(), 3);
    let rows = browser.rows();
    assert_eq!(
        rows.iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>(),
        ids(&expected)
    );
    for row in &rows {
        for mark in row["marks"].as_array().unwrap() {
            let mark = mark.as_str().unwrap().to_ascii_lowercase();
            assert!(mark == "disk" || mark == "upstream", "{row}");
        }
    }

    // The topic picker offers the topics of /topics, where it is served.
    if endpoint_status(&node.api, "/topics?from=1h") != 404 {
        browser.wait_js(
            "the topic picker to offer the topic",
            "return document.querySelector('#topics option[value=default]') !== null;",
            json!([]),
        );
    }

    // `/` focuses the query box from anywhere.
    browser.js("document.activeElement.blur();", json!([]));
    browser.press("/");
    assert_eq!(
        browser.js("return document.activeElement.dataset.testid;", json!([])),
        "q"
    );

    // A query run in the page is in its URL; that URL shows it again.
    browser.type_into("[data-testid=q]", "quiet\u{E007}");
    browser.wait_js(
        "the new query to finish",
        "return document.body.dataset.state === 'done' &&
           document.querySelector('[data-testid=results]').dataset.count === '1';",
        json!([]),
    );
    let href = browser.js("return location.href;", json!([]));
    let href = href.as_str().unwrap().to_string();
    assert!(
        href.contains("q=quiet") && href.contains("from=15m"),
        "{href}"
    );
    browser.goto("about:blank");
    browser.goto(&href);
    browser.wait_state("done");
    let rows = browser.rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["payload"], "quiet line");
    assert_eq!(rows[0]["marks"], json!(["quiet"]));
    browser.screenshot("from-url");

    // A query the server refuses is an error, with its reason.
    browser.goto(&format!("http://{}/ui/?q=(&regex=1", node.api));
    browser.wait_state("error");
    let status = browser.js(
        "return document.querySelector('[data-testid=status]').textContent;",
        json!([]),
    );
    assert!(status.as_str().unwrap().contains("400"), "{status}");
    browser.screenshot("error");
    browser.assert_no_page_errors();
}

#[test]
fn ui_histogram_matches_the_api_and_a_drag_zooms_the_range() {
    let (_dir, node) = node_with(&sample_lines());
    require_endpoint(&node, "/histogram?from=1h", "GET /histogram");
    let browser = Browser::start("histogram");
    browser.goto(&format!("http://{}/ui/?q=ERROR", node.api));
    browser.wait_state("done");
    let check_counts = |browser: &Browser| {
        let h = browser.js(
            "const h = document.querySelector('[data-testid=histogram]').dataset;
             return [h.source, h.counts, Number(h.fromMs), Number(h.toMs)];",
            json!([]),
        );
        assert_eq!(h[0], "server", "the bars are the API's answer once it came");
        let (from, to) = (h[2].as_u64().unwrap(), h[3].as_u64().unwrap());
        let reply = http_request(
            &node.api,
            "GET",
            &format!("/histogram?q=ERROR&from={from}&to={to}&buckets=60"),
        )
        .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        let answer: Value = serde_json::from_str(&reply.body).unwrap();
        let counts: Vec<String> = answer["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["count"].to_string())
            .collect();
        assert_eq!(h[1], counts.join(","));
        (from, to)
    };
    let (from, to) = check_counts(&browser);
    assert_eq!(
        browser.js(
            "return document.querySelector('[data-testid=histogram]').dataset.counts
               .split(',').reduce((a, c) => a + Number(c), 0);",
            json!([])
        ),
        5
    );
    browser.screenshot("before-zoom");

    // Drag over the right half of the chart, past its right edge (the
    // selection stops at the edge: the zoomed range ends where it did).
    let over = browser.find("[data-testid=histogram] .u-over");
    let width = browser.js(
        "return document.querySelector('[data-testid=histogram] .u-over')
           .getBoundingClientRect().width;",
        json!([]),
    );
    let half = (width.as_f64().unwrap() / 2.0) as i64;
    browser.cmd(
        "POST",
        "actions",
        Some(json!({"actions": [{
            "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [
                {"type": "pointerMove", "duration": 0, "origin": over, "x": 0, "y": 0},
                {"type": "pointerDown", "button": 0},
                {"type": "pointerMove", "duration": 100, "origin": over, "x": half / 2, "y": 0},
                {"type": "pointerMove", "duration": 100, "origin": over, "x": half + 20, "y": 0},
                {"type": "pointerUp", "button": 0},
            ],
        }]})),
    );
    browser.cmd("DELETE", "actions", None);
    browser.wait_js(
        "the zoomed query to finish",
        "return document.body.dataset.state === 'done' &&
           document.querySelector('[data-testid=from]').value !== '1h';",
        json!([]),
    );
    let (zoom_from, zoom_to) = check_counts(&browser);
    assert!(
        zoom_from > from && zoom_to == to,
        "zoomed [{from}, {to}] to [{zoom_from}, {zoom_to}]"
    );
    let href = browser.js("return location.search;", json!([]));
    assert!(
        href.as_str().unwrap().contains("from=20"),
        "absolute times in the URL: {href}"
    );
    let expected = api_records(
        &node,
        &format!("q=ERROR&from={zoom_from}&to={zoom_to}&direction=backward&limit=100000"),
    );
    assert_eq!(expected.len(), 5, "the lines were sent in the last minute");
    assert_eq!(
        browser.js(
            "return Number(document.querySelector('[data-testid=results]').dataset.count);",
            json!([])
        ),
        expected.len()
    );
    browser.screenshot("zoomed");
    browser.assert_no_page_errors();
}

#[test]
fn ui_live_tail_shows_new_lines_and_pauses_when_scrolled_up() {
    let (_dir, node) = node_with(&["before the tail"]);
    require_endpoint(&node, "/stream?format=json", "GET /stream (live tail)");
    let browser = Browser::start("tail");
    browser.goto(&format!("http://{}/ui/?tail=1", node.api));
    browser.wait_state("tailing");
    send_and_wait_close(&node.fast, b"tail line one\n");
    browser.wait_js(
        "the tailed line to appear",
        "return [...document.querySelectorAll('[data-testid=row]')]
           .some((r) => r.textContent.includes('tail line one'));",
        json!([]),
    );
    browser.wait_js(
        "a heartbeat",
        "return document.querySelector('[data-testid=heartbeat]').textContent !== '';",
        json!([]),
    );
    browser.screenshot("tailing");

    // Enough lines to scroll, then scroll up: new lines are counted, not
    // scrolled to.
    send_and_wait_close(&node.fast, &numbered_lines(60, "fill"));
    browser.wait_js(
        "the fill lines (shown, or counted as lagged)",
        "const shown = Number(document.querySelector('[data-testid=results]').dataset.count);
         const lagged = Number(document.querySelector('[data-testid=lagged]').dataset.n || 0);
         return shown + lagged >= 61;",
        json!([]),
    );
    browser.js(
        "const r = document.querySelector('[data-testid=results]');
         r.scrollTop = 0; r.dispatchEvent(new Event('scroll'));",
        json!([]),
    );
    send_and_wait_close(&node.fast, b"late one\nlate two\nlate three\n");
    let marker = browser.wait_js(
        "the new-lines marker",
        "const m = document.querySelector('[data-testid=new-lines]');
         return !m.hidden && m.textContent.startsWith('3 ') && m.textContent;",
        json!([]),
    );
    assert_eq!(marker, "3 new lines ↓");
    assert_eq!(
        browser.js(
            "return document.querySelector('[data-testid=results]').scrollTop;",
            json!([])
        ),
        0
    );
    browser.screenshot("tail-paused");

    // Esc ends the tail, and the URL says so.
    browser.press("\u{E00C}");
    browser.wait_state("idle");
    let search = browser.js("return location.search;", json!([]));
    assert!(!search.as_str().unwrap().contains("tail"), "{search}");
    browser.assert_no_page_errors();
}

#[test]
fn ui_renders_only_the_visible_rows_of_100000_results() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    send_and_wait_close(&node.fast, &numbered_lines(100_000, "big"));
    node.wait_records(100_000);
    let browser = Browser::start("virtual-list");
    browser.goto(&format!("http://{}/ui/?q=big", node.api));
    browser.wait_state("done");
    let (from, to) = page_range(&browser);
    let expected = api_records(
        &node,
        &format!("q=big&from={from}&to={to}&direction=backward&limit=100000"),
    );
    assert_eq!(expected.len(), 100_000);
    let seen = browser.js(
        "const r = document.querySelector('[data-testid=results]');
         const before = r.querySelectorAll('[data-testid=row]').length;
         r.scrollTop = 50000 * 20; r.dispatchEvent(new Event('scroll'));
         const rows = [...r.querySelectorAll('[data-testid=row]')];
         return [r.dataset.count, before, rows.length,
                 rows.map((x) => [Number(x.dataset.index), x.dataset.id])];",
        json!([]),
    );
    assert_eq!(seen[0], "100000");
    let (before, after) = (seen[1].as_u64().unwrap(), seen[2].as_u64().unwrap());
    assert!(
        before > 0 && before < 200 && after > 0 && after < 200,
        "only the visible rows are in the page: {before}, {after}"
    );
    for pair in seen[3].as_array().unwrap() {
        let index = pair[0].as_u64().unwrap() as usize;
        assert!(
            (49_900..50_100).contains(&index),
            "row {index} far from the scroll"
        );
        assert_eq!(pair[1], expected[index]["id"], "row {index}");
    }
    browser.screenshot("scrolled");
    browser.assert_no_page_errors();
}

/// A proxy to `target` that holds the answer to any request whose first
/// line contains one of `holds`' texts until that text's gate opens; other
/// answers pass. (A browser does not pipeline: once a held request is
/// sent on a connection, every later byte from the server on it is that
/// answer or a later one.)
fn holding_proxy(target: String, holds: Vec<(&'static str, Gate)>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(&target) else {
                continue;
            };
            // The gates this connection's answers must pass, as requests ask.
            let held: std::sync::Arc<Mutex<Vec<Gate>>> = Default::default();
            let (mut client_read, mut server_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (up_held, holds) = (held.clone(), holds.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 << 10];
                while let Ok(n) = client_read.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&buf[..n]);
                    let first = text.lines().next().unwrap_or("");
                    for (what, gate) in &holds {
                        if first.contains(what) {
                            up_held.lock().unwrap().push(gate.clone());
                        }
                    }
                    if server_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = server_write.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let (mut server, mut client) = (server, client);
                let mut buf = [0u8; 16 << 10];
                while let Ok(n) = server.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let gates: Vec<Gate> = held.lock().unwrap().clone();
                    for gate in gates {
                        gate.wait();
                    }
                    if client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = client.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

#[test]
fn ui_shows_planning_then_running_and_esc_cancels() {
    let (_dir, node) = node_with(&sample_lines());
    let (plan, results) = (Gate::default(), Gate::default());
    let proxy = holding_proxy(
        node.api.clone(),
        vec![
            ("HEAD /query", plan.clone()),
            ("format=json", results.clone()),
        ],
    );
    let browser = Browser::start("states");
    browser.goto(&format!("http://{proxy}/ui/?q=ERROR"));
    browser.wait_state("planning");
    browser.screenshot("planning");
    plan.open();
    browser.wait_state("running");
    browser.screenshot("running");
    // Esc cancels the held query; the page is idle and says so.
    browser.press("\u{E00C}");
    browser.wait_state("idle");
    let status = browser.js(
        "return document.querySelector('[data-testid=status]').textContent;",
        json!([]),
    );
    assert!(
        status.as_str().unwrap().starts_with("cancelled"),
        "{status}"
    );
    browser.screenshot("cancelled");
    // Enter runs it again, to the end once the answers flow.
    results.open();
    browser.type_into("[data-testid=q]", "ERROR\u{E007}");
    browser.wait_state("done");
    assert_eq!(
        browser.js(
            "return document.querySelector('[data-testid=results]').dataset.count;",
            json!([])
        ),
        "5"
    );
    browser.assert_no_page_errors();
}

#[test]
fn ui_flags_an_incomplete_cluster_answer_with_the_failed_node() {
    use crate::cluster_harness::*;
    let nodes = start_cluster(&["ingest", "store"], &[]);
    let (ingest, store) = (&nodes[0], &nodes[1]);
    send_and_wait_close(&ingest.fast(), b"one ERROR line\n");
    let dead = ingest.id();
    ingest.kill9();
    store.wait_node_live(&dead, false);
    let browser = Browser::start("incomplete");
    browser.goto(&format!("http://{}/ui/?q=ERROR", store.api()));
    browser.wait_state("done");
    let flag = browser.js(
        "const f = document.querySelector('[data-testid=incomplete]');
         return [f.hidden, f.textContent];",
        json!([]),
    );
    assert_eq!(flag[0], false, "{flag}");
    let text = flag[1].as_str().unwrap();
    assert!(
        text.starts_with("incomplete result: failed nodes: ") && text.matches(&dead).count() == 1,
        "{text}"
    );
    browser.screenshot("incomplete");
    browser.assert_no_page_errors();
}
