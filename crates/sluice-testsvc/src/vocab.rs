//! Static vocabularies used by the line generator.
//!
//! Everything here is lower case except the HTTP user agents, which contain
//! mixed-case product names but never the token `ERROR`. The generator relies
//! on that: the upper-case token `ERROR` may only come from a level field.

/// Service names, as they would appear in a `svc=` field or a logger name.
pub const SERVICES: &[&str] = &[
    "api-gateway",
    "auth",
    "checkout",
    "payments",
    "inventory",
    "search",
    "notifier",
    "billing",
    "user-svc",
    "scheduler",
    "cache-proxy",
    "ingest-worker",
    "recommender",
    "shipping",
];

/// Deployment regions.
pub const REGIONS: &[&str] = &[
    "eu-west-1",
    "eu-central-1",
    "us-east-1",
    "us-west-2",
    "ap-south-1",
];

/// HTTP methods, weighted by repetition.
pub const METHODS: &[&str] = &[
    "GET", "GET", "GET", "GET", "GET", "GET", "POST", "POST", "PUT", "DELETE", "PATCH", "HEAD",
];

/// Path templates; `{}` is replaced by a numeric id.
pub const PATHS: &[&str] = &[
    "/api/v1/users/{}",
    "/api/v1/users/{}/orders",
    "/api/v1/orders/{}",
    "/api/v1/orders/{}/items",
    "/api/v2/cart/{}",
    "/api/v2/checkout/{}/confirm",
    "/api/v1/products/{}",
    "/api/v1/products/{}/reviews",
    "/api/v1/search",
    "/api/v1/sessions",
    "/api/v1/payments/{}/capture",
    "/api/v1/invoices/{}.pdf",
    "/healthz",
    "/metrics",
    "/static/js/app.{}.js",
    "/static/css/main.{}.css",
    "/images/products/{}.jpg",
    "/login",
    "/logout",
    "/",
];

/// HTTP user agents for access logs.
pub const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "curl/8.5.0",
    "python-requests/2.32.3",
    "Go-http-client/1.1",
    "kube-probe/1.31",
    "Prometheus/2.55.1",
    "okhttp/4.12.0",
];

/// Referers for access logs.
pub const REFERERS: &[&str] = &[
    "-",
    "-",
    "-",
    "https://shop.example.com/",
    "https://shop.example.com/cart",
    "https://www.google.com/",
    "https://shop.example.com/products",
];

/// Database tables.
pub const TABLES: &[&str] = &[
    "users",
    "orders",
    "order_items",
    "products",
    "payments",
    "sessions",
    "invoices",
    "carts",
    "shipments",
];

/// Message queue topics.
pub const TOPICS: &[&str] = &[
    "orders.created",
    "payments.captured",
    "users.signup",
    "inventory.changed",
    "emails.outbound",
    "audit.events",
];

/// Batch job names.
pub const JOBS: &[&str] = &[
    "nightly-report",
    "reindex-products",
    "expire-sessions",
    "sync-inventory",
    "send-digest",
    "rotate-keys",
    "compact-ledger",
];

/// Filler words used to pad messages, query strings and free text.
pub const WORDS: &[&str] = &[
    "account",
    "active",
    "after",
    "allocated",
    "applied",
    "async",
    "attempt",
    "backend",
    "batch",
    "before",
    "buffer",
    "bytes",
    "cache",
    "callback",
    "canceled",
    "capacity",
    "cart",
    "channel",
    "checksum",
    "client",
    "cluster",
    "commit",
    "completed",
    "config",
    "connection",
    "consumer",
    "context",
    "count",
    "current",
    "customer",
    "data",
    "default",
    "delivery",
    "digest",
    "disk",
    "done",
    "draining",
    "entry",
    "event",
    "expired",
    "export",
    "external",
    "fallback",
    "fetch",
    "field",
    "flush",
    "follower",
    "handler",
    "header",
    "healthy",
    "index",
    "inflight",
    "input",
    "instance",
    "interval",
    "invoice",
    "item",
    "key",
    "latency",
    "leader",
    "lease",
    "limit",
    "listener",
    "loaded",
    "local",
    "lookup",
    "manifest",
    "merge",
    "message",
    "metadata",
    "method",
    "migration",
    "mode",
    "node",
    "notify",
    "offset",
    "order",
    "origin",
    "output",
    "owner",
    "page",
    "partition",
    "payload",
    "peer",
    "pending",
    "policy",
    "pool",
    "primary",
    "process",
    "product",
    "profile",
    "queue",
    "quota",
    "range",
    "ready",
    "rebalance",
    "record",
    "refresh",
    "region",
    "remote",
    "replica",
    "request",
    "resolved",
    "response",
    "result",
    "retry",
    "route",
    "schema",
    "scope",
    "segment",
    "sequence",
    "server",
    "session",
    "shard",
    "shipment",
    "size",
    "snapshot",
    "socket",
    "source",
    "stale",
    "state",
    "stream",
    "subscriber",
    "success",
    "sync",
    "table",
    "target",
    "task",
    "tenant",
    "thread",
    "token",
    "total",
    "trace",
    "upstream",
    "user",
    "value",
    "version",
    "warm",
    "window",
    "worker",
    "write",
    "zone",
];

/// What a line is about; selects messages and fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Http,
    Db,
    Queue,
    Auth,
    Job,
    Cache,
}

/// All kinds, for uniform selection.
pub const KINDS: &[Kind] = &[
    Kind::Http,
    Kind::Http,
    Kind::Http,
    Kind::Db,
    Kind::Queue,
    Kind::Auth,
    Kind::Job,
    Kind::Cache,
];

/// Severity of an application line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    /// Upper-case spelling (`INFO`, `ERROR`, ...).
    pub fn upper(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }

    /// Lower-case spelling (`info`, `error`, ...).
    pub fn lower(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Message texts for a kind and level. None contains upper-case letters.
pub fn messages(kind: Kind, level: Level) -> &'static [&'static str] {
    use Kind::*;
    use Level::*;
    match (kind, level) {
        (Http, Debug) => &[
            "routing request",
            "request headers parsed",
            "response body encoded",
            "matched route",
        ],
        (Http, Info) => &[
            "request completed",
            "request completed",
            "served static asset",
            "session refreshed",
            "order created",
            "user profile updated",
        ],
        (Http, Warn) => &[
            "slow request",
            "client closed connection early",
            "rate limit approaching for client",
            "deprecated api version used",
            "retrying upstream request",
        ],
        (Http, Error) => &[
            "upstream request failed: context deadline exceeded",
            "upstream timeout while reading response headers",
            "handler panicked: index out of range",
            "failed to encode response: broken pipe",
            "connection reset by peer",
        ],
        (Db, Debug) => &[
            "sql query executed",
            "transaction started",
            "prepared statement cached",
            "connection checked out",
        ],
        (Db, Info) => &[
            "migration applied",
            "connection pool resized",
            "query plan cached",
            "vacuum finished",
        ],
        (Db, Warn) => &[
            "slow query",
            "connection pool exhausted, waiting",
            "replication lag high",
            "lock wait exceeded threshold",
        ],
        (Db, Error) => &[
            "query failed: canceling statement due to statement timeout",
            "database connection lost",
            "deadlock detected",
            "failed to acquire connection from pool: timeout",
            "unique constraint violation on primary key",
        ],
        (Queue, Debug) => &[
            "message received",
            "offset committed",
            "heartbeat sent",
            "fetch returned records",
        ],
        (Queue, Info) => &[
            "message published",
            "consumer joined group",
            "partition assigned",
            "batch acknowledged",
        ],
        (Queue, Warn) => &[
            "consumer lag growing",
            "producer buffer nearly full",
            "rebalance in progress",
            "message redelivered",
        ],
        (Queue, Error) => &[
            "failed to commit offset: coordinator not available",
            "producer send timeout after 30000ms",
            "message rejected: payload too large",
            "consumer rebalance failed",
        ],
        (Auth, Debug) => &[
            "token decoded",
            "loaded user permissions",
            "password hash verified",
            "oauth state validated",
        ],
        (Auth, Info) => &[
            "user logged in",
            "user logged out",
            "token issued",
            "password changed",
            "mfa challenge passed",
        ],
        (Auth, Warn) => &[
            "failed login attempt",
            "token expired",
            "mfa challenge failed",
            "suspicious login location",
        ],
        (Auth, Error) => &[
            "token signature verification failed",
            "ldap bind timeout",
            "failed to load signing key",
            "session store unavailable",
        ],
        (Job, Debug) => &[
            "job tick",
            "job lock acquired",
            "checkpoint loaded",
            "chunk processed",
        ],
        (Job, Info) => &[
            "job started",
            "job finished",
            "job scheduled",
            "checkpoint written",
        ],
        (Job, Warn) => &[
            "job running longer than expected",
            "job retry scheduled",
            "skipping overlapping run",
            "partial batch processed",
        ],
        (Job, Error) => &[
            "job failed after max retries",
            "job timeout exceeded",
            "worker crashed: out of memory",
            "failed to write checkpoint: no space left on device",
        ],
        (Cache, Debug) => &[
            "cache hit",
            "cache miss",
            "cache entry evicted",
            "cache lookup",
        ],
        (Cache, Info) => &[
            "cache warmed",
            "cache flushed",
            "cache node joined",
            "cache resized",
        ],
        (Cache, Warn) => &[
            "cache hit ratio low",
            "cache eviction storm",
            "cache node slow to respond",
            "cache key too large",
        ],
        (Cache, Error) => &[
            "redis connection refused",
            "cache write timeout",
            "failed to deserialize cached value",
            "cluster slot migration failed",
        ],
    }
}
