//! A headless Chromium session for the UI tests (`ui.rs`), driven over
//! W3C WebDriver with plain HTTP: Debian's `chromium` and
//! `chromium-driver`. One browser runs at a time.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Mutex, MutexGuard},
};

use serde_json::{Value, json};

use crate::harness::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C name of an element reference.
pub(crate) const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser at a time: the machines that run the suite are small.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

/// A headless Chromium session behind its own chromedriver.
pub(crate) struct Browser {
    driver: Child,
    addr: String,
    session: String,
    test: &'static str,
    _one: MutexGuard<'static, ()>,
}

impl Browser {
    pub(crate) fn start(test: &'static str) -> Browser {
        for path in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} is missing: the UI tests drive Debian's headless Chromium; \
                 run scripts/setup-test-deps (it installs chromium and chromium-driver; CI does)"
            );
        }
        let one = ONE_BROWSER.lock().unwrap_or_else(|p| p.into_inner());
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let mut browser = Browser {
            driver,
            addr,
            session: String::new(),
            test,
            _one: one,
        };
        wait_for("chromedriver to be ready", || {
            let (_, status) = webdriver(&browser.addr, "GET", "/status", None).ok()?;
            (status["value"]["ready"] == true).then_some(())
        });
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900"],
            },
        }}});
        let (status, answer) = webdriver(&browser.addr, "POST", "/session", Some(&capabilities))
            .unwrap_or_else(|e| panic!("chromedriver: {e}"));
        assert_eq!(status, 200, "could not start Chromium: {answer}");
        browser.session = answer["value"]["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        browser
    }

    /// A command of this session; its `value`.
    pub(crate) fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let full = format!("/session/{}/{path}", self.session);
        let (status, answer) = webdriver(&self.addr, method, &full, body.as_ref())
            .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"));
        assert_eq!(status, 200, "webdriver {method} {path}: {answer}");
        answer["value"].clone()
    }

    pub(crate) fn goto(&self, url: &str) {
        self.cmd("POST", "url", Some(json!({ "url": url })));
    }

    /// Run `script` (a function body; `arguments` are `args`) in the page.
    pub(crate) fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Poll `script` until it returns something other than null or false.
    pub(crate) fn wait_js(&self, what: &str, script: &str, args: Value) -> Value {
        wait_for(what, || {
            let value = self.js(script, args.clone());
            (!value.is_null() && value != false).then_some(value)
        })
    }

    /// Wait for `body[data-state=state]`; a page that ends in `error`
    /// instead fails at once with what it says.
    pub(crate) fn wait_state(&self, state: &str) {
        let script = "return [document.body.dataset.state, \
             document.querySelector('[data-testid=status]').textContent];";
        wait_for(&format!("the page to be {state}"), || {
            let seen = self.js(script, json!([]));
            if seen[0] == state {
                return Some(());
            }
            assert!(
                seen[0] != "error",
                "the page went to error while {state} was expected: {}",
                seen[1]
            );
            None
        });
    }

    pub(crate) fn find(&self, css: &str) -> Value {
        let found = self.cmd(
            "POST",
            "element",
            Some(json!({"using": "css selector", "value": css})),
        );
        assert!(found[ELEMENT].is_string(), "no element {css}: {found}");
        json!({ (ELEMENT): found[ELEMENT] })
    }

    /// Type `text` into the element `css` (`\u{E007}` is Enter).
    pub(crate) fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css)[ELEMENT].as_str().unwrap().to_string();
        self.cmd("POST", &format!("element/{id}/clear"), Some(json!({})));
        self.cmd(
            "POST",
            &format!("element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Press and release `key` (a character, or a WebDriver key code such
    /// as `\u{E00C}`, Escape) wherever the focus is.
    pub(crate) fn press(&self, key: &str) {
        self.cmd(
            "POST",
            "actions",
            Some(json!({"actions": [{
                "type": "key", "id": "keyboard",
                "actions": [{"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}],
            }]})),
        );
        self.cmd("DELETE", "actions", None);
    }

    /// Save a screenshot as `target/ui-screenshots/<test>-<label>.png`.
    pub(crate) fn screenshot(&self, label: &str) {
        let png = self.cmd("GET", "screenshot", None);
        let bytes = base64_decode(png.as_str().expect("base64 PNG"));
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("target/tmp has a parent")
            .join("ui-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{}-{label}.png", self.test)), bytes).unwrap();
    }

    /// The rows on screen: id, time, topic, payload text, the texts of
    /// its `<mark>`s, and how many elements other than those it holds.
    pub(crate) fn rows(&self) -> Vec<Value> {
        let rows = self.js(
            "return [...document.querySelectorAll('[data-testid=results] [data-testid=row]')]
               .sort((a, b) => a.dataset.index - b.dataset.index)
               .map((r) => ({
                 id: r.dataset.id,
                 time: r.querySelector('.t').textContent,
                 topic: r.querySelector('.tp').textContent,
                 payload: r.querySelector('[data-testid=payload]').textContent,
                 marks: [...r.querySelectorAll('mark')].map((m) => m.textContent),
                 others: r.querySelectorAll('[data-testid=payload] *:not(mark)').length,
               }));",
            json!([]),
        );
        rows.as_array().unwrap().clone()
    }

    /// Page-side problems: CSP violations and uncaught errors.
    pub(crate) fn assert_no_page_errors(&self) {
        let seen = self.js("return window.__sluice;", json!([]));
        assert_eq!(seen["violations"], json!([]), "CSP violations: {seen}");
        assert_eq!(seen["errors"], json!([]), "script errors: {seen}");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = webdriver(
                &self.addr,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One WebDriver request over HTTP/1.1: status and JSON answer.
pub(crate) fn webdriver(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(DEADLINE))
        .map_err(|e| e.to_string())?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    // chromedriver keeps the connection open: read the head, then
    // Content-Length bytes (or chunks up to the last one).
    let mut reply = Vec::new();
    let mut buf = [0u8; 64 << 10];
    let (head, mut payload) = loop {
        if let Some(at) = reply.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&reply[..at]).to_ascii_lowercase();
            break (head, reply[at + 4..].to_vec());
        }
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the connection closed before the headers ended".into());
        }
        reply.extend_from_slice(&buf[..n]);
    };
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let complete = match length {
            Some(length) => payload.len() >= length,
            None => chunked && payload.ends_with(b"0\r\n\r\n"),
        };
        if complete {
            break;
        }
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        payload.extend_from_slice(&buf[..n]);
    }
    if chunked {
        payload = dechunk(&payload);
    }
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    let value = if payload.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&payload).map_err(|e| format!("{e}: {payload:?}"))?
    };
    Ok((status, value))
}

pub(crate) fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..eol]).unwrap_or("0");
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&body[eol + 2..eol + 2 + size]);
        body = &body[eol + 2 + size + 2..];
    }
    out
}

pub(crate) fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=' && c != b'\n').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= u32::from(value(c)) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}
