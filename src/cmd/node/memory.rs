//! How the node asks the allocator to handle its large buffers.
//!
//! The block cache turns over buffers of 1-8 MiB (a block's text) and
//! hundreds of KiB (its ids and line offsets) all day: compaction keeps
//! every block it writes, and each insert evicts another. glibc serves a
//! large request from its own mapping only until the first such mapping is
//! freed; it then raises that threshold and serves them from the heap,
//! where blocks freed in CLOCK order leave holes that the next sizes do not
//! fit. A node under sustained ingest with a 1 GiB cache grew its anonymous
//! memory 0.8 GiB past the cache in 40 s, and kept growing. With the
//! threshold fixed, buffers of [`LARGE_BUFFER`] and more are mapped on
//! their own and returned to the system when freed: the same node stayed at
//! the cache plus about 110 MiB.
//!
//! Fixing it also fixes the trim threshold at its default, 128 KiB: a heap
//! whose free top passes that is handed back to the system. A query's
//! answer goes out in chunks of about 240 KiB, written on the query's
//! thread and freed by the HTTP task's, so the query thread's heap handed
//! back (and faulted in again, a page at a time) about 5.6 MB of every 11 MB
//! answer. Each heap now keeps up to [`HEAP_KEPT`] free. glibc gives the
//! threads that allocate heaps of their own, at most eight per core; the
//! node's busy ones are its query, worker and HTTP threads.

/// Allocations of at least this many bytes get their own mapping.
pub const LARGE_BUFFER: usize = 256 << 10;

/// Free bytes at the top of a heap that glibc keeps rather than returns.
pub const HEAP_KEPT: usize = 4 << 20;

/// Fix glibc's mmap threshold at [`LARGE_BUFFER`] (which also stops it
/// from moving) and its trim threshold at [`HEAP_KEPT`]. Elsewhere
/// (another libc) nothing is done. Called before the node starts any
/// thread.
pub fn keep_large_buffers_out_of_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        set_threshold(
            libc::M_MMAP_THRESHOLD,
            "mmap",
            LARGE_BUFFER,
            "memory may grow past --block-cache under ingest",
        );
        set_threshold(
            libc::M_TRIM_THRESHOLD,
            "trim",
            HEAP_KEPT,
            "queries will fault their answer buffers in again",
        );
    }
}

/// Set glibc's `param` (the `name` threshold) to `bytes`, warning with
/// what happens `otherwise` if it cannot.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_threshold(param: libc::c_int, name: &str, bytes: usize, otherwise: &str) {
    // `unsafe_code` is allowed for this one call.
    #[allow(unsafe_code)]
    // SAFETY: mallopt only changes a tunable of the allocator; it is
    // called before the node starts its threads, and reads no memory of
    // ours.
    let set = unsafe { libc::mallopt(param, bytes as libc::c_int) };
    if set != 1 {
        tracing::warn!(
            bytes,
            "could not set the allocator's {name} threshold; {otherwise}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query's answer is written in chunks whose buffer must come from
    /// the heap, not a mapping of its own per chunk.
    #[test]
    fn an_answers_chunk_buffer_is_under_the_threshold() {
        const { assert!(sluice_api::query::CHUNK_BUFFER_BYTES < LARGE_BUFFER) };
    }
}
