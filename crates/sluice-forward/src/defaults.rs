//! Every default, limit, wait and backoff of the forwarder, in one place:
//! [`ForwardConfig::new`](crate::ForwardConfig::new) and the command line
//! (`sluice forward --help`) both read them from here.

use std::time::Duration;

/// Close a batch at this many bytes: 1 MiB (`--batch-size`).
pub const BATCH_BYTES: usize = 1 << 20;
/// The largest `--batch-size` (and `--max-line`) accepted: 16 MiB, within
/// an ingester's default batch limit.
pub const MAX_BATCH_BYTES: usize = 16 << 20;
/// Close a batch at this many lines.
pub const BATCH_RECORDS: u32 = 10_000;
/// Close a batch this long after its first line (`--linger`).
pub const LINGER: Duration = Duration::from_millis(100);
/// The longest line sent; longer ones are cut and counted (`--max-line`).
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Bytes of batches waiting in memory before `--on-full` applies: 64 MiB
/// (`--queue-max`).
pub const QUEUE_MAX_BYTES: usize = 64 << 20;
/// Bytes the disk spool may hold before `--on-full` applies: 1 GiB
/// (`--spool-max`).
pub const SPOOL_MAX_BYTES: u64 = 1 << 30;
/// Batches in flight per connection, unacknowledged.
pub const WINDOW: usize = 16;
/// How long a stop waits for acks without a spool (`--drain-timeout`).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Open agent connections allowed, over all listeners
/// (`--listen-max-connections`).
pub const LISTEN_MAX_CONNECTIONS: usize = 1024;
/// How often a followed file is polled at its end.
pub const FILE_POLL: Duration = Duration::from_millis(100);

/// The first wait before connecting again to a sluice or fluent
/// destination; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// The first wait before connecting again to a plain-lines destination; it
/// doubles up to [`MAX_BACKOFF`].
pub const FIRST_LINES_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between connection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a plain-lines sender waits for the destination to close after
/// the end of input.
pub const LINES_CLOSE_WAIT: Duration = Duration::from_secs(30);
/// How long a sender waits for a batch, or for room in its window, before
/// it looks at the stop flag again.
pub const SENDER_WAIT: Duration = Duration::from_millis(100);
/// How often a stop looks again at what is still unacknowledged: the
/// drain, the queue's blocked input, an agent's pending chunk.
pub const STOP_CHECK: Duration = Duration::from_millis(200);
/// How often the checkpoint (and the spool's sync) is written.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);
/// The pause after a checkpoint that could not be written, before trying
/// again.
pub const CHECKPOINT_RETRY: Duration = Duration::from_secs(1);
/// Bytes read at a time from stdin, a followed file or an agent
/// connection: 256 KiB.
pub const READ_CHUNK_BYTES: usize = 256 << 10;
/// Bytes read at a time from a destination's replies: 64 KiB.
pub const REPLY_BUFFER_BYTES: usize = 64 << 10;
