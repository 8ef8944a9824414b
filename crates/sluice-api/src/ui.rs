//! `/ui/`: the web UI, embedded in the binary.
//!
//! The files under the repository's `ui/` directory (plain JavaScript
//! modules, no build step; uPlot vendored under `ui/vendor/`) are compiled
//! in with `include_bytes!`, so tests and release builds serve the same
//! bytes and a node needs nothing beside its binary.
//!
//! ```text
//! GET /ui          308 to /ui/ (the query string kept: a shared link still works)
//! GET /ui/         index.html
//! GET /ui/<file>   one of ASSETS, else 404
//! ```
//!
//! Every answer carries `Cache-Control: no-cache` and an `ETag` (a hash of
//! the file, computed at first use), so a browser revalidates and gets 304
//! until the binary changes; and a strict `Content-Security-Policy` (only
//! this origin, no inline script or style) with `X-Content-Type-Options:
//! nosniff`. The UI renders log text only as text; the policy is the second
//! line of defence.

use std::sync::OnceLock;

use axum::{
    extract::Path,
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};

/// The policy every UI answer carries: scripts, styles, images and
/// requests from this origin only; no plugins, no `<base>`, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; object-src 'none'; \
     base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// One embedded file.
struct Asset {
    /// The path under `/ui/`.
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

macro_rules! asset {
    ($path:literal, $content_type:expr) => {
        Asset {
            path: $path,
            content_type: $content_type,
            bytes: include_bytes!(concat!("../../../ui/", $path)),
        }
    };
}

/// Every file the UI serves.
static ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("app.js", JS),
    asset!("lib.js", JS),
    asset!("chart.js", JS),
    asset!("app.css", CSS),
    asset!("vendor/uPlot.iife.min.js", JS),
    asset!("vendor/uPlot.min.css", CSS),
    asset!("vendor/uPlot.LICENSE", TEXT),
];

/// Each asset's ETag, in the order of [`ASSETS`]: a strong validator from
/// a 64-bit FNV-1a hash of the bytes.
fn etags() -> &'static [HeaderValue] {
    static ETAGS: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let tag = format!("\"{:016x}-{:x}\"", fnv1a(a.bytes), a.bytes.len());
                HeaderValue::from_str(&tag).expect("hex is a valid header value")
            })
            .collect()
    })
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `GET /ui`: to `/ui/`, keeping the query string.
pub(crate) async fn redirect(uri: Uri) -> Response {
    let location = match uri.query() {
        Some(query) => format!("/ui/?{query}"),
        None => "/ui/".to_string(),
    };
    (
        StatusCode::PERMANENT_REDIRECT,
        [(header::LOCATION, location)],
    )
        .into_response()
}

/// `GET /ui/`: the page.
pub(crate) async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /ui/<path>`: an asset, or 404.
pub(crate) async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

fn serve(path: &str, request: &HeaderMap) -> Response {
    let mut response = match ASSETS.iter().position(|a| a.path == path) {
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, TEXT)],
            format!("no such file in the web UI: /ui/{path}\n"),
        )
            .into_response(),
        Some(at) => {
            let asset = &ASSETS[at];
            let etag = &etags()[at];
            let mut response = if matches(request, etag) {
                StatusCode::NOT_MODIFIED.into_response()
            } else {
                ([(header::CONTENT_TYPE, asset.content_type)], asset.bytes).into_response()
            };
            let headers = response.headers_mut();
            headers.insert(header::ETAG, etag.clone());
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Whether `If-None-Match` names `etag` (or is `*`).
fn matches(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let Some(etag) = etag.to_str().ok() else {
        return false;
    };
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{Router, routing::get};

    /// The UI's routes, as `crate::router` mounts them, on a port of
    /// their own.
    async fn serve_ui() -> String {
        let app: Router = Router::new()
            .route("/ui", get(redirect))
            .route("/ui/", get(index))
            .route("/ui/{*path}", get(asset));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
        response
            .headers()
            .get(name)
            .unwrap_or_else(|| panic!("no {name} on {}", response.url()))
            .to_str()
            .unwrap()
    }

    #[tokio::test]
    async fn every_file_is_served_with_its_type_the_policy_and_a_validator() {
        let base = serve_ui().await;
        let http = client();
        let mut paths: Vec<(String, &str, &[u8])> = ASSETS
            .iter()
            .map(|a| (format!("/ui/{}", a.path), a.content_type, a.bytes))
            .collect();
        paths.push(("/ui/".into(), HTML, ASSETS[0].bytes));
        for (path, content_type, bytes) in paths {
            let response = http.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
            assert_eq!(header(&response, "content-type"), content_type, "{path}");
            assert_eq!(
                header(&response, "content-security-policy"),
                CONTENT_SECURITY_POLICY
            );
            assert!(CONTENT_SECURITY_POLICY.starts_with("default-src 'self'"));
            assert_eq!(header(&response, "x-content-type-options"), "nosniff");
            assert_eq!(header(&response, "cache-control"), "no-cache");
            let etag = header(&response, "etag").to_string();
            assert_eq!(&response.bytes().await.unwrap()[..], bytes, "{path}");
            let again = http
                .get(format!("{base}{path}"))
                .header("if-none-match", &etag)
                .send()
                .await
                .unwrap();
            assert_eq!(again.status(), 304, "{path}");
            assert_eq!(header(&again, "etag"), etag);
            assert!(again.bytes().await.unwrap().is_empty());
            let stale = http
                .get(format!("{base}{path}"))
                .header("if-none-match", "\"0\"")
                .send()
                .await
                .unwrap();
            assert_eq!(stale.status(), 200, "{path}");
        }
    }

    #[tokio::test]
    async fn ui_redirects_to_the_slash_and_unknown_files_are_404() {
        let base = serve_ui().await;
        let http = client();
        let response = http.get(format!("{base}/ui")).send().await.unwrap();
        assert_eq!(response.status(), 308);
        assert_eq!(header(&response, "location"), "/ui/");
        let response = http
            .get(format!("{base}/ui?q=error&regex=1"))
            .send()
            .await
            .unwrap();
        assert_eq!(header(&response, "location"), "/ui/?q=error&regex=1");
        for path in [
            "/ui/nope.js",
            "/ui/vendor/nope.js",
            "/ui/lib.test.js",
            "/ui/vendor/",
        ] {
            let response = http.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(response.status(), 404, "{path}");
            assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        }
    }

    #[test]
    fn every_file_of_the_ui_directory_is_embedded() {
        let ui = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui");
        let mut files = Vec::new();
        for dir in [ui.clone(), ui.join("vendor")] {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_file() {
                    files.push(
                        path.strip_prefix(&ui)
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
        }
        files.sort();
        let mut embedded: Vec<&str> = ASSETS.iter().map(|a| a.path).collect();
        embedded.push("lib.test.js");
        embedded.sort();
        assert_eq!(
            files, embedded,
            "add a new ui/ file to ASSETS (tests stay out)"
        );
    }

    /// The values of every `attr="..."` in `html`.
    fn attribute_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
        let needle = format!(" {attr}=\"");
        html.match_indices(&needle)
            .map(|(at, _)| {
                let rest = &html[at + needle.len()..];
                &rest[..rest.find('"').expect("closed attribute")]
            })
            .collect()
    }

    #[test]
    fn every_src_and_href_in_the_page_resolves_and_nothing_is_inline() {
        let html = std::str::from_utf8(ASSETS[0].bytes).unwrap();
        let mut links = attribute_values(html, "src");
        links.extend(attribute_values(html, "href"));
        assert!(links.len() >= 4, "{links:?}");
        for link in links {
            assert!(
                !link.contains(':') && !link.starts_with('/'),
                "{link}: the page links only its own files, relatively"
            );
            assert!(
                ASSETS.iter().any(|a| a.path == link),
                "index.html links {link}, which is not embedded"
            );
        }
        // The policy forbids inline script and style: none is written.
        assert_eq!(
            html.matches("<script").count(),
            html.matches("<script src=").count()
                + html.matches("<script type=\"module\" src=").count()
        );
        assert!(!html.contains(" style=") && !html.contains("<style"));
        for (at, _) in html.match_indices(" on") {
            let rest = &html[at + 3..];
            let word = rest.len()
                - rest
                    .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                    .len();
            assert!(
                !rest[word..].starts_with('='),
                "an inline handler: {}",
                &html[at..at + 20]
            );
        }
        assert!(!html.contains("javascript:"));
        // app.js imports only embedded modules.
        let app = std::str::from_utf8(ASSETS[1].bytes).unwrap();
        for line in app.lines().filter(|l| l.starts_with("import ")) {
            let module = line
                .rsplit_once("from './")
                .unwrap()
                .1
                .trim_end_matches("';");
            assert!(ASSETS.iter().any(|a| a.path == module), "{module}");
        }
        // Log text reaches the page as text only.
        for (name, source) in [
            ("app.js", app),
            ("lib.js", std::str::from_utf8(ASSETS[2].bytes).unwrap()),
            ("chart.js", std::str::from_utf8(ASSETS[3].bytes).unwrap()),
        ] {
            for forbidden in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
            ] {
                assert!(!source.contains(forbidden), "{name} uses {forbidden}");
            }
        }
    }
}
