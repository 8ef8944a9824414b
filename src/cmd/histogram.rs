//! `sluice query --histogram`: a client of `GET /histogram`, printed as a
//! small text chart (one row per bucket: its start, its count, a bar
//! scaled to the terminal's width) or, with `--json`, the answer as is.

use std::{io::Write, process::ExitCode};

use anyhow::{Context, bail};

use super::query::{Args, cannot_reach, verdict};

/// The chart's width when `COLUMNS` does not say.
const DEFAULT_WIDTH: usize = 80;

pub async fn run(base: &str, args: &Args) -> anyhow::Result<ExitCode> {
    let mut params: Vec<(&str, String)> = vec![
        ("from", args.from.clone()),
        ("to", args.to.clone()),
        ("buckets", args.buckets.to_string()),
        ("consistency", args.consistency.clone()),
    ];
    params.extend(args.filter.params());
    if let Some(timeout) = args.node_timeout {
        params.push(("node_timeout", format!("{}ms", timeout.as_millis())));
    }
    let response = super::query::client_for(base)?
        .get(format!("{base}/histogram"))
        .query(&params)
        .send()
        .await
        .with_context(|| cannot_reach(base))?;
    let status = response.status();
    let body = response.text().await.context("read the histogram")?;
    if !status.is_success() {
        bail!("histogram failed with {status}: {}", body.trim());
    }
    let answer: serde_json::Value =
        serde_json::from_str(&body).context("the node's histogram is not JSON")?;
    let mut out = std::io::stdout().lock();
    if args.json {
        out.write_all(body.as_bytes())?;
    } else {
        out.write_all(render(&answer, width()).as_bytes())?;
    }
    out.flush()?;
    Ok(verdict(&answer))
}

/// The terminal's width, from `COLUMNS`, else [`DEFAULT_WIDTH`].
fn width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .filter(|&w: &usize| w >= 20)
        .unwrap_or(DEFAULT_WIDTH)
}

/// One row per bucket, `width` columns at most: its start time, its
/// count, and a bar of `#` as long as the count relative to the largest.
pub fn render(answer: &serde_json::Value, width: usize) -> String {
    let buckets: Vec<(&str, u64)> = answer["buckets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            (
                b["time"].as_str().unwrap_or("?"),
                b["count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let max = buckets.iter().map(|&(_, c)| c).max().unwrap_or(0);
    let time_width = buckets.iter().map(|(t, _)| t.len()).max().unwrap_or(0);
    let count_width = max.to_string().len();
    let room = width.saturating_sub(time_width + count_width + 2).max(1);
    let mut out = String::new();
    for (time, count) in buckets {
        // Any count above zero gets at least one mark.
        let bar = match (count, max) {
            (0, _) | (_, 0) => 0,
            _ => ((count as u128 * room as u128).div_ceil(max as u128) as usize).max(1),
        };
        out.push_str(&format!(
            "{time:<time_width$} {count:>count_width$} {}\n",
            "#".repeat(bar)
        ));
    }
    out.push_str(&format!(
        "total {} in {} buckets of {} ms\n",
        answer["total"].as_u64().unwrap_or(0),
        answer["buckets"].as_array().map_or(0, Vec::len),
        answer["step_ms"].as_u64().unwrap_or(0)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_width_and_every_count_shows() {
        let answer = serde_json::json!({
            "step_ms": 60000,
            "total": 1001,
            "buckets": [
                {"time": "2026-12-02T05:00:00.000Z", "count": 1000},
                {"time": "2026-12-02T05:01:00.000Z", "count": 1},
                {"time": "2026-12-02T05:02:00.000Z", "count": 0},
            ],
        });
        let chart = render(&answer, 60);
        let rows: Vec<&str> = chart.lines().collect();
        assert_eq!(rows.len(), 4);
        // 24 for the time, 4 for the count, 2 spaces: 30 columns of bar.
        assert_eq!(
            rows[0],
            format!("2026-12-02T05:00:00.000Z 1000 {}", "#".repeat(30))
        );
        assert_eq!(rows[1], "2026-12-02T05:01:00.000Z    1 #");
        assert_eq!(rows[2], "2026-12-02T05:02:00.000Z    0 ");
        assert_eq!(rows[3], "total 1001 in 3 buckets of 60000 ms");
        assert!(rows.iter().all(|r| r.len() <= 60));
    }
}
