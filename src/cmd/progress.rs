//! The progress line `sluice query` shows on stderr while a query runs:
//! about how much of the plan is scanned, the matches so far and the
//! rate. Shown only when stderr is a terminal and stdout is not (records
//! go to a file or a pipe while someone watches); never when stderr is
//! piped.
//!
//! The node's progress frames say how far the scan got by id (every
//! record up to that id, or down to it newest first, is decided); ids
//! sort by time, so that is a share of the time range, and the bytes
//! scanned are that share of the plan's bytes (`HEAD /query`): an
//! estimate, exact when data is spread evenly over the range. The range
//! starts where the first id seen lies (the scan reports where its data
//! starts first), so a range mostly empty does not read as nearly done.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ulid::Ulid;

/// Whether to show progress: stderr is a terminal and stdout is not.
pub fn should_show(stderr_is_tty: bool, stdout_is_tty: bool) -> bool {
    stderr_is_tty && !stdout_is_tty
}

/// The progress line of one query.
pub struct Progress {
    bar: Option<ProgressBar>,
    from_ms: u64,
    to_ms: u64,
    plan_bytes: u64,
    backward: bool,
    matches: u64,
    /// The share of the range decided, 0 to 1.
    done: f64,
    /// Where the data starts (ends, newest first): the first id seen.
    origin: Option<u64>,
    started: Instant,
}

impl Progress {
    /// A progress line over `[from_ms, to_ms]` and a plan of `plan_bytes`,
    /// drawn on stderr when `show`.
    pub fn new(show: bool, from_ms: u64, to_ms: u64, plan_bytes: u64, backward: bool) -> Progress {
        let bar = show.then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(ProgressStyle::with_template("{msg}").expect("a valid template"));
            bar
        });
        Progress {
            bar,
            from_ms,
            to_ms,
            plan_bytes,
            backward,
            matches: 0,
            done: 0.0,
            origin: None,
            started: Instant::now(),
        }
    }

    /// `n` more records printed.
    pub fn records(&mut self, n: u64) {
        self.matches += n;
        self.draw();
    }

    /// The node decided every record up to `id` (down to it, newest
    /// first).
    pub fn mark(&mut self, id: Ulid) {
        // A node says "nothing yet" with the smallest (largest, newest
        // first) id: no news of where the data is.
        if id.0 == 0 || id.0 == u128::MAX {
            return;
        }
        let ms = id.timestamp_ms().clamp(self.from_ms, self.to_ms);
        let origin = *self.origin.get_or_insert(ms);
        let share = match self.backward {
            false => (ms - origin) as f64 / self.to_ms.saturating_sub(origin).max(1) as f64,
            true => (origin - ms) as f64 / origin.saturating_sub(self.from_ms).max(1) as f64,
        };
        self.done = self.done.max(share.clamp(0.0, 1.0));
        self.draw();
    }

    fn draw(&self) {
        if let Some(bar) = &self.bar {
            bar.set_message(render(
                (self.done * self.plan_bytes as f64) as u64,
                self.plan_bytes,
                self.matches,
                self.started.elapsed().as_secs_f64(),
            ));
        }
    }

    /// Remove the line: the query ended.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `scanned ~12.0 MiB of 48.0 MiB (25%), 1234 matches, 40.0 MiB/s`.
pub fn render(scanned: u64, plan: u64, matches: u64, elapsed_secs: f64) -> String {
    let percent = match plan {
        0 => 100,
        _ => (scanned.min(plan) as u128 * 100 / plan as u128) as u64,
    };
    let rate = match elapsed_secs > 0.0 {
        true => scanned as f64 / elapsed_secs,
        false => 0.0,
    };
    format!(
        "scanned ~{} of {} ({percent}%), {matches} matches, {}/s",
        mib(scanned as f64),
        mib(plan as f64),
        mib(rate)
    )
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1u64 << 20) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_only_to_a_terminal_while_records_go_elsewhere() {
        assert!(should_show(true, false));
        assert!(!should_show(true, true), "records on the terminal");
        assert!(!should_show(false, false), "stderr piped");
        assert!(!should_show(false, true));
    }

    #[test]
    fn the_line_says_bytes_of_the_plan_matches_and_rate() {
        assert_eq!(
            render(12 << 20, 48 << 20, 1234, 0.5),
            "scanned ~12.0 MiB of 48.0 MiB (25%), 1234 matches, 24.0 MiB/s"
        );
        assert_eq!(
            render(0, 0, 0, 0.0),
            "scanned ~0.0 MiB of 0.0 MiB (100%), 0 matches, 0.0 MiB/s"
        );
    }

    #[test]
    fn marks_are_a_share_of_the_range_either_way() {
        let mut p = Progress::new(false, 1_000, 2_000, 100 << 20, false);
        p.mark(Ulid::from_parts(900, 0));
        assert_eq!(p.done, 0.0, "the data starts at the first id seen");
        p.mark(Ulid::from_parts(1_250, 0));
        assert_eq!(p.done, 0.25);
        p.mark(Ulid::from_parts(1_100, 0));
        assert_eq!(p.done, 0.25, "never goes back");
        // Data only in the range's last tenth: measured from there.
        let mut p = Progress::new(false, 1_000, 2_000, 100 << 20, false);
        p.mark(Ulid::from_parts(1_900, 0));
        p.mark(Ulid::from_parts(1_950, 0));
        assert_eq!(p.done, 0.5);
        let mut p = Progress::new(false, 1_000, 2_000, 100 << 20, true);
        p.mark(Ulid(u128::MAX));
        assert_eq!(p.origin, None, "a mark of nothing yet");
        p.mark(Ulid::from_parts(2_000, 0));
        p.mark(Ulid::from_parts(1_250, 0));
        assert_eq!(p.done, 0.75);
        p.mark(Ulid::from_parts(1_500, 0));
        assert_eq!(p.done, 0.75, "never goes back");
    }
}
