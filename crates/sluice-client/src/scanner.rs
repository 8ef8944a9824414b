use std::collections::VecDeque;

use sluice_record::Ulid;

/// Why a page of a [`Scanner`] could not be read. No record is skipped:
/// the cursor passes only records returned, so iterating on retries from
/// there.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The request failed: no connection, or the response was cut off.
    #[error("query {url}: {source}")]
    Http {
        /// The `/query` URL, without its parameters.
        url: String,
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
    /// The node answered with a status other than 200 (400 for a bad
    /// query, 503 when it is busy).
    #[error("query {url} failed with {status}: {body}")]
    Status {
        /// The `/query` URL, without its parameters.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The node's message, trimmed.
        body: String,
    },
    /// A result line is not `<ulid> <topic> <payload>`.
    #[error("malformed result line {0:?}")]
    Malformed(String),
}

/// One record of a query result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The record's id: pass it to [`Scanner::after`] to resume here.
    pub id: Ulid,
    /// Its topic (bytes that are not UTF-8 replaced).
    pub topic: String,
    /// Its payload, as ingested.
    pub payload: Vec<u8>,
}

/// Iterates a query's records in id order, `page` records per request,
/// resuming after [`cursor`](Scanner::cursor).
pub struct Scanner {
    client: reqwest::blocking::Client,
    url: String,
    params: Vec<(String, String)>,
    page: usize,
    cursor: Option<Ulid>,
    buffered: VecDeque<Entry>,
    exhausted: bool,
}

impl Scanner {
    /// `api` is a node's HTTP address (`127.0.0.1:7650` or a URL); `from`
    /// and `query` as for `sluice query`.
    pub fn new(api: &str, from: &str, query: &str) -> Scanner {
        let base = if api.starts_with("http") {
            api.to_string()
        } else {
            format!("http://{api}")
        };
        Scanner {
            client: reqwest::blocking::Client::new(),
            url: format!("{}/query", base.trim_end_matches('/')),
            params: vec![("from".into(), from.into()), ("q".into(), query.into())],
            page: 10_000,
            cursor: None,
            buffered: VecDeque::new(),
            exhausted: false,
        }
    }

    /// Resume after this id (the last one a previous run processed).
    pub fn after(mut self, cursor: Option<Ulid>) -> Scanner {
        self.cursor = cursor;
        self
    }

    /// Only records of `topic`.
    pub fn topic(mut self, topic: &str) -> Scanner {
        self.params.push(("topic".into(), topic.into()));
        self
    }

    /// Ask for `records` records per request (at least 1; 10,000 unless
    /// set).
    pub fn page_size(mut self, records: usize) -> Scanner {
        self.page = records.max(1);
        self
    }

    /// The id of the last record returned: checkpoint it to resume later.
    pub fn cursor(&self) -> Option<Ulid> {
        self.cursor
    }

    fn fetch(&mut self) -> Result<(), ScanError> {
        let mut params = self.params.clone();
        params.push(("limit".into(), self.page.to_string()));
        if let Some(after) = self.cursor {
            params.push(("after".into(), after.to_string()));
        }
        let http = |source| ScanError::Http {
            url: self.url.clone(),
            source,
        };
        let response = self
            .client
            .get(&self.url)
            .query(&params)
            .send()
            .map_err(http)?;
        let status = response.status().as_u16();
        let body = response.bytes().map_err(http)?;
        if status != 200 {
            return Err(ScanError::Status {
                url: self.url.clone(),
                status,
                body: String::from_utf8_lossy(&body).trim().to_string(),
            });
        }
        let mut count = 0;
        for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let malformed = || ScanError::Malformed(String::from_utf8_lossy(line).into_owned());
            let mut fields = line.splitn(3, |&b| b == b' ');
            let id = fields
                .next()
                .and_then(|f| std::str::from_utf8(f).ok())
                .and_then(|f| Ulid::from_string(f).ok())
                .ok_or_else(malformed)?;
            let topic = fields
                .next()
                .map(|t| String::from_utf8_lossy(t).into_owned())
                .ok_or_else(malformed)?;
            let payload = fields.next().ok_or_else(malformed)?.to_vec();
            self.buffered.push_back(Entry { id, topic, payload });
            count += 1;
        }
        if count < self.page {
            self.exhausted = true;
        }
        Ok(())
    }
}

impl Iterator for Scanner {
    type Item = Result<Entry, ScanError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buffered.is_empty()
            && !self.exhausted
            && let Err(err) = self.fetch()
        {
            return Some(Err(err));
        }
        let entry = self.buffered.pop_front()?;
        self.cursor = Some(entry.id);
        Some(Ok(entry))
    }
}
