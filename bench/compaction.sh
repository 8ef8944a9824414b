#!/usr/bin/env bash
# bench/compaction.sh: does compaction keep up with sustained ingest?
# Sends testsvc lines at a fixed rate to a fresh ingeststore for a fixed
# time and samples, every 2 s, the bytes still in v1 store segments (queryable,
# not yet compacted) and in v2 ones. Rewrites its own generated section of
# BENCHMARKS.md.
#
#   bash bench/compaction.sh                         # 150 MB/s for 30 s
#   SLUICE_BENCH_RATE_MB=100 SLUICE_BENCH_SECONDS=10 bash bench/compaction.sh
#
# Environment:
#   SLUICE_BENCH_RATE_MB    MB/s of 200-byte lines to send (default 150)
#   SLUICE_BENCH_SECONDS    seconds to send for (default 30)
#   SLUICE_BENCH_NO_BUILD=1 skip `cargo build --release`
#   SLUICE_BENCH_OUTPUT     file to write (default BENCHMARKS.md at the repo root)
#   SLUICE_BIN              binary to benchmark (default target/release/sluice)
#
# Compaction keeps up when the v1 backlog stops growing while the send goes
# on; the report gives the compaction rate during the send (the counter
# sluice_store_compaction_input_bytes_total over the send's duration)
# against the send rate, the peak backlog and how long it took to drain.
#
# Queries must not stall meanwhile: at every sample it times
# `sluice query -q ERROR --stats` over the second that ended 3 s before, and
# after the drain it runs the same windows again on the idle node. The
# report compares the two latencies and the records each run matched.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$ROOT/bench/lib.sh"

RATE_MB=${SLUICE_BENCH_RATE_MB:-150}
SECONDS_SENT=${SLUICE_BENCH_SECONDS:-30}
OUTPUT=${SLUICE_BENCH_OUTPUT:-$ROOT/BENCHMARKS.md}
SLUICE=${SLUICE_BIN:-$ROOT/target/release/sluice}

RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/out/compaction-$RUN_ID
trap 'stop_all; rm -rf "$OUT/data"' EXIT

require_tools nc curl awk
build_sluice
mkdir -p "$OUT"

DATA=$OUT/data
start_ingeststore "$DATA" "$OUT/node.log" --fluent off --syslog off

# backlog: "V1_BYTES V2_BYTES" of the store's segments.
backlog() {
	local f size v1=0 v2=0
	for f in "$DATA"/store/*.seg; do
		[[ -e $f ]] || continue
		size=$(file_size "$f")
		if is_v2_segment "$f"; then
			v2=$((v2 + size))
		else
			v1=$((v1 + size))
		fi
	done
	echo "$v1 $v2"
}
compacted_bytes() { node_metric sluice_store_compaction_input_bytes_total; }

# probe_query FROM_MS TO_MS: "SECONDS MATCHED" of one query over that window.
probe_query() {
	local t0 t1 matched
	t0=$(now)
	matched=$(timeout 60 "$SLUICE" query --api "$NODE_API" --from "$1" --to "$2" -q ERROR --stats | json_num records_matched)
	t1=$(now)
	echo "$(elapsed "$t0" "$t1") ${matched:-n/a}"
}
# median and max of column $1 of stdin, as "MEDIAN MAX".
median_max() {
	sort -g -k"$1","$1" | awk -v c="$1" '{ v[NR] = $c } END { if (NR == 0) { print "n/a n/a"; exit } printf "%.3f %.3f\n", v[int((NR + 1) / 2)], v[NR] }'
}

LINES_PER_S=$((RATE_MB * 1000000 / 200))
COUNT=$((LINES_PER_S * SECONDS_SENT))
log "sending $COUNT lines at $RATE_MB MB/s for ${SECONDS_SENT}s"
START=$(now)
"$SLUICE" testsvc --rate "$LINES_PER_S" --size 200 --count "$COUNT" | nc -N "${NODE_FAST%:*}" "${NODE_FAST##*:}" &
SEND_PID=$!
BG_PIDS+=("$SEND_PID")
SAMPLES=$OUT/samples.md
PROBES=$OUT/probes.txt
: >"$SAMPLES"
: >"$PROBES"
PEAK_V1=0 SEND_END="" SEND_COMPACTED="" DRAINED=""
DEADLINE=$(($(date +%s) + SECONDS_SENT * 10 + 120))
while (($(date +%s) < DEADLINE)); do
	sleep 2
	kill -0 "$NODE_PID" 2>/dev/null || die "ingeststore exited; see $OUT/node.log"
	t=$(elapsed "$START" "$(now)")
	read -r v1 v2 < <(backlog)
	((v1 > PEAK_V1)) && PEAK_V1=$v1
	probe_to=$(($(date +%s%3N) - 2000))
	probe_from=$((probe_to - 1000))
	read -r probe_s probe_n < <(probe_query "$probe_from" "$probe_to")
	echo "$probe_from $probe_to $probe_s $probe_n" >>"$PROBES"
	echo "| $t | $(mib "$v1") | $(mib "$v2") | $(node_metric sluice_store_unsorted_blocks) | $probe_s | $probe_n |" >>"$SAMPLES"
	if [[ -z $SEND_END ]] && ! kill -0 "$SEND_PID" 2>/dev/null; then
		wait "$SEND_PID" || die "the send failed"
		SEND_END=$t
		SEND_COMPACTED=$(compacted_bytes)
	fi
	if [[ -n $SEND_END ]] && ((v1 == 0)); then
		DRAINED=$t
		break
	fi
done
[[ -n $DRAINED ]] || die "compaction did not drain the v1 backlog in time"
# Then the passes with nothing to merge sort the blocks written in id order.
SORTED=""
while (($(date +%s) < DEADLINE)); do
	if (($(node_metric sluice_store_unsorted_blocks) == 0)); then
		SORTED=$(elapsed "$START" "$(now)")
		break
	fi
	sleep 1
done
[[ -n $SORTED ]] || die "the store did not sort every block in time"
# The same windows again, now that nothing is being written or compacted.
IDLE=$OUT/idle.txt
: >"$IDLE"
while read -r probe_from probe_to probe_s probe_n; do
	read -r idle_s idle_n < <(probe_query "$probe_from" "$probe_to")
	echo "$probe_s $idle_s $probe_n $idle_n" >>"$IDLE"
done <"$PROBES"
read -r BUSY_MED BUSY_MAX < <(median_max 1 <"$IDLE")
read -r IDLE_MED IDLE_MAX < <(median_max 2 <"$IDLE")
# Windows whose count changed: before the drain a window may still have been
# in flight through the ingest log; a later count below an earlier one would
# be a gap.
FEWER_LATER=$(awk '$3 != "n/a" && $4 != "n/a" && $4 + 0 < $3 + 0' "$IDLE" | wc -l)
MORE_LATER=$(awk '$3 != "n/a" && $4 != "n/a" && $4 + 0 > $3 + 0' "$IDLE" | wc -l)
RSS=$(peak_rss_kib "$NODE_PID")
stop_pid "$NODE_PID" ingeststore

SENT_BYTES=$(awk -v n="$COUNT" 'BEGIN { printf "%.0f", n * 201 }')
GEN=$OUT/generated.md
{
	echo "## Compaction under sustained ingest (bench/compaction.sh)"
	echo
	echo "Run $RUN_ID on $(nproc) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)."
	echo "Command: \`bash bench/compaction.sh\` (SLUICE_BENCH_RATE_MB=$RATE_MB, SLUICE_BENCH_SECONDS=$SECONDS_SENT):"
	echo "\`sluice testsvc --rate $LINES_PER_S --size 200 --count $COUNT | nc -N 127.0.0.1 FAST\` into a fresh ingeststore, sender and node on the same cores."
	echo
	echo "- The send took ${SEND_END}s or less (sampled every 2 s): $(mib_per_s "$SENT_BYTES" "$SEND_END") MiB/s."
	echo "- Compaction read $(mib "$SEND_COMPACTED") MiB of segments during the send: $(mib_per_s "$SEND_COMPACTED" "$SEND_END") MiB/s, $(ratio "$SEND_COMPACTED" "$SENT_BYTES") of the bytes sent (its inputs include v2 segments merged again with small neighbours, so this can pass 1)."
	echo "- Peak v1 backlog $(mib "$PEAK_V1") MiB; every segment was v2 at ${DRAINED}s, $(elapsed "$SEND_END" "$DRAINED")s after the send ended."
	echo "- Merges write blocks in id order; passes with nothing to merge then sort them (\`sluice_store_unsorted_blocks\`): every block was sorted at ${SORTED}s, $(elapsed "$SEND_END" "$SORTED")s after the send ended."
	echo "- Peak RSS of the ingeststore: $(awk -v k="$RSS" 'BEGIN { printf "%.0f MiB", k / 1024 }')."
	echo "- Query during the send (\`sluice query -q ERROR --stats\` over one second of data, at every sample): median ${BUSY_MED}s, max ${BUSY_MAX}s. The same $(wc -l <"$IDLE") windows on the idle node afterwards, every block sorted: median ${IDLE_MED}s, max ${IDLE_MAX}s."
	echo "- Matched counts: $FEWER_LATER windows matched fewer records afterwards than during the send (a gap), $MORE_LATER matched more (records still in flight when first asked)."
	echo
	echo "| seconds | v1 MiB (not yet compacted) | v2 MiB | unsorted blocks | query (s) | matched |"
	echo "|---:|---:|---:|---:|---:|---:|"
	cat "$SAMPLES"
} >"$GEN"
write_generated "$OUTPUT" bench/compaction.sh "$GEN"
