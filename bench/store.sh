#!/usr/bin/env bash
# bench/store.sh: the store engine (compaction into v2 segments, pruned
# scans) against ripgrep on the same lines, warm and cold, in one run.
# Rewrites its own generated section of BENCHMARKS.md.
#
#   bash bench/store.sh                              # 2 GiB testsvc + 512 MiB nginx
#   SLUICE_BENCH_STORE_MB=256 SLUICE_BENCH_NGINX_MB=64 bash bench/store.sh   # quick
#
# Environment:
#   SLUICE_BENCH_STORE_MB   MiB of the testsvc corpus (default 2048)
#   SLUICE_BENCH_NGINX_MB   MiB of the nginx access-log corpus (default 512)
#   SLUICE_BENCH_REPS       warm runs per query; the best is reported (default 3)
#   SLUICE_BENCH_NO_BUILD=1 skip `cargo build --release`
#   SLUICE_BENCH_OUTPUT     file to write (default BENCHMARKS.md at the repo root)
#   SLUICE_BIN              binary to benchmark (default target/release/sluice)
#
# Per corpus: a fresh ingeststore (default settings: the consumer adopts
# ingest segments as v1, compaction rewrites them as v2 in the background);
# one `nc -N` sends the corpus to the fast port. Measured: time until every
# line is queryable, time until compaction has rewritten every segment as v2,
# bytes on disk, then queries with `sluice query` against `rg` over the
# corpus file: warm (best of REPS, both in page cache) and cold (the page
# cache dropped before each run; needs root, else reported as skipped).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$ROOT/bench/lib.sh"

STORE_MB=${SLUICE_BENCH_STORE_MB:-2048}
NGINX_MB=${SLUICE_BENCH_NGINX_MB:-512}
REPS=${SLUICE_BENCH_REPS:-3}
OUTPUT=${SLUICE_BENCH_OUTPUT:-$ROOT/BENCHMARKS.md}
SLUICE=${SLUICE_BIN:-$ROOT/target/release/sluice}
QUERY_TIMEOUT=600
RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/out/store-$RUN_ID
TABLE=$OUT/table.md

cleanup() {
	stop_all
	[[ ${SLUICE_BENCH_KEEP:-0} == 1 ]] || rm -rf "$OUT"/data-* "$OUT"/corpus-*
}
trap cleanup EXIT

require_tools nc curl rg awk
build_sluice
mkdir -p "$OUT"
CAN_DROP=0
if [[ -w /proc/sys/vm/drop_caches ]] && (echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then
	CAN_DROP=1
else
	warn "cannot drop the page cache (not root?): cold runs are skipped"
fi

# --------------------------------------------------------------- corpora --
# testsvc repeats a 16 MiB pool of lines, so one long run would hold every
# id 128 times per 2 GiB. Real ids are rare: the corpus is made of 16 MiB
# runs with distinct seeds. SEED COUNT prints COUNT ~200-byte lines.
testsvc_lines() {
	local seed=$1 left=$2 chunk=80000 n
	while ((left > 0)); do
		n=$((left < chunk ? left : chunk))
		"$SLUICE" testsvc --rate 0 --size 200 --count "$n" --seed "$seed" ||
			die "sluice testsvc failed"
		left=$((left - n)) seed=$((seed + 1))
	done
}
# testsvc: mixed logfmt, JSON, nginx and plain lines of ~200 bytes.
gen_testsvc() {
	local file=$OUT/corpus-testsvc lines=$((STORE_MB * 1048576 / 201))
	testsvc_lines 7000000 "$lines" >"$file"
}
# nginx: only the combined-format access-log lines of testsvc's mix.
gen_nginx() {
	local file=$OUT/corpus-nginx lines=$((NGINX_MB * 1048576 / 190))
	testsvc_lines 8000000 $((lines * 5)) |
		grep -E '^[0-9]{1,3}(\.[0-9]{1,3}){3} - ' | head -n "$lines" >"$file" || true
	[[ -s $file ]] || die "no nginx lines in testsvc output"
}

# ------------------------------------------------------------------ node --
start_node() {
	local name=$1
	NODE_DATA=$OUT/data-$name
	NODE_LOG=$OUT/node-$name.log
	rm -rf "$NODE_DATA"
	start_ingeststore "$NODE_DATA" "$NODE_LOG" --fluent off --syslog off
}

node_alive() {
	kill -0 "$NODE_PID" 2>/dev/null ||
		die "ingeststore exited; last lines of $NODE_LOG:"$'\n'"$(tail -n 20 "$NODE_LOG")"
}

query() { timeout "$QUERY_TIMEOUT" "$SLUICE" query --api "$NODE_API" "$@"; }

# queryable N: exactly N records are queryable.
queryable() {
	node_alive
	[[ $(query --from 24h -q '' --stats | json_num records_matched) == "$1" ]]
}

# all_compacted: every store segment is v2 (its header frame says SLUICE).
all_compacted() {
	node_alive
	local f n=0
	for f in "$NODE_DATA"/store/*.seg; do
		[[ -e $f ]] || return 1
		is_v2_segment "$f" || return 1
		n=$((n + 1))
	done
	((n > 0))
}

store_bytes() { cat "$NODE_DATA"/store/*.seg | wc -c; }

# all_sorted: the store reports no block left in id order (merges write
# blocks in id order; passes with nothing to merge sort them).
all_sorted() {
	node_alive
	(($(node_metric sluice_store_unsorted_blocks) == 0))
}

# ulid_ms ULID -> its Unix time in milliseconds (the first 10 characters).
ulid_ms() {
	local alphabet=0123456789ABCDEFGHJKMNPQRSTVWXYZ value=0 i c prefix
	for ((i = 0; i < 10; i++)); do
		c=${1:i:1}
		prefix=${alphabet%%"$c"*}
		value=$((value * 32 + ${#prefix}))
	done
	echo "$value"
}

# segment_time_range -> "FIRST_MS LAST_MS" over every store segment's name.
segment_time_range() {
	local f name lo="" hi="" a b
	for f in "$NODE_DATA"/store/*.seg; do
		name=${f##*/}
		a=$(ulid_ms "${name:0:26}")
		b=$(ulid_ms "${name:27:26}")
		[[ -z $lo ]] || ((a >= lo)) || lo=$a
		[[ -n $lo ]] || lo=$a
		[[ -z $hi ]] || ((b <= hi)) || hi=$b
		[[ -n $hi ]] || hi=$b
	done
	echo "$lo $hi"
}

drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

# cold CMD...: drop the page cache, then time CMD once.
cold() {
	drop_caches
	best_of 1 1 "$@"
}

# ------------------------------------------------------------------- run --
bench_corpus() {
	local name=$1 file=$OUT/corpus-$1 bytes lines t0 t_sent t_q t_c t_s
	bytes=$(file_size "$file")
	lines=$(wc -l <"$file")
	log "corpus $name: $(mib "$bytes") MiB, $lines lines"
	start_node "$name"
	t0=$(now)
	nc -N "${NODE_FAST%:*}" "${NODE_FAST##*:}" <"$file" || die "nc failed"
	t_sent=$(now)
	poll_until 600 0.2 "$lines records queryable" queryable "$lines"
	t_q=$(now)
	poll_until 1800 0.5 "every segment compacted to v2" all_compacted
	t_c=$(now)
	poll_until 1800 0.5 "every block sorted" all_sorted
	t_s=$(now)
	local rss_compact disk
	rss_compact=$(peak_rss_kib "$NODE_PID")
	disk=$(store_bytes)
	log "$name: queryable after $(elapsed "$t0" "$t_q") s, compacted after $(elapsed "$t0" "$t_c") s, sorted after $(elapsed "$t0" "$t_s") s, $(mib "$disk") MiB on disk"

	# The literals: a rare 32-hex id from the middle of the corpus, and a
	# common one (on about 1% of testsvc lines; a status on 0.3% of nginx's).
	local rare common share regex from_ms
	# The rarest of 20 32-hex ids sampled from the second half of the corpus
	# (each id is on one line or a few, as in real logs).
	local candidate count rare_lines=""
	rare=""
	while read -r candidate; do
		count=$(rg_count -F -- "$candidate" "$file")
		if [[ -z $rare_lines ]] || ((count < rare_lines)); then
			rare=$candidate rare_lines=$count
		fi
	done < <(tail -n +$((lines / 2)) "$file" | grep -o -E '[0-9a-f]{32}' | awk 'NR % 997 == 1' | head -n 20 || true)
	[[ -n $rare ]] || die "no 32-hex id in the second half of corpus-$name"
	case $name in
	testsvc) common=ERROR share='~1%' regex='status=5[0-9]{2}' ;;
	nginx) common='" 503 ' share='~0.3%' regex='" 5[0-9]{2} [0-9]+' ;;
	esac
	# The data's time range, from the segments' names (ULID ranges).
	local first_ms last_ms
	read -r first_ms last_ms < <(segment_time_range)
	from_ms=$((last_ms - (last_ms - first_ms) / 100))

	local q label sl_args rg_args
	{
		echo
		echo "#### Corpus \`$name\`: $(mib "$bytes") MiB, $lines lines"
		echo
		echo "- Queryable $(elapsed "$t0" "$t_q") s after the send began ($(mib_per_s "$bytes" "$(elapsed "$t0" "$t_q")") MiB/s);" \
			"the send itself took $(elapsed "$t0" "$t_sent") s."
		echo "- Compaction had rewritten every segment as v2 $(elapsed "$t0" "$t_c") s after the send began," \
			"$(elapsed "$t_q" "$t_c") s after the data was queryable: $(mib_per_s "$bytes" "$(elapsed "$t0" "$t_c")") MiB/s of corpus end to end."
		echo "- Every block was sorted $(elapsed "$t0" "$t_s") s after the send began, $(elapsed "$t_c" "$t_s") s after compaction: $(mib_per_s "$bytes" "$(elapsed "$t_c" "$t_s")") MiB/s sorted. The queries below run on sorted blocks."
		echo "- On disk after compaction: $(mib "$disk") MiB, **$(ratio "$disk" "$bytes")** of the raw text."
		echo "- Peak RSS of the ingeststore through ingest and compaction: $(awk -v k="$rss_compact" 'BEGIN { printf "%.0f MiB", k / 1024 }')."
		echo
		echo "| query | sluice warm (s) | rg warm (s) | sluice/rg warm | sluice cold (s) | rg cold (s) | sluice/rg cold | bytes read | matches sluice / rg |"
		echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
	} >>"$TABLE"
	for q in common rare regex recent; do
		case $q in
		common)
			label="literal \`$common\` ($share)"
			sl_args=(--from 24h -q "$common")
			rg_args=(-F -- "$common")
			;;
		rare)
			label="rare id \`${rare:0:8}…\` ($rare_lines lines)"
			sl_args=(--from 24h -q "$rare")
			rg_args=(-F -- "$rare")
			;;
		regex)
			label="regex \`$regex\`"
			sl_args=(--from 24h --regex -q "$regex")
			rg_args=(-e "$regex")
			;;
		recent)
			label="last 1% of the time range, all lines"
			sl_args=(--from "$from_ms" -q '')
			rg_args=()
			;;
		esac
		local s_warm r_warm="n/a" s_cold="n/a" r_cold="n/a" n_s n_r="n/a" read_bytes all_bytes
		local sq=("$SLUICE" query --api "$NODE_API")
		s_warm=$(best_of "$REPS" 0 "${sq[@]}" "${sl_args[@]}")
		n_s=$(query "${sl_args[@]}" | wc -l)
		read_bytes=$(query "${sl_args[@]}" --stats | json_num bytes_read)
		if ((${#rg_args[@]} > 0)); then
			cat "$file" >/dev/null
			r_warm=$(best_of "$REPS" 1 rg "${rg_args[@]}" "$file")
			n_r=$(rg_count "${rg_args[@]}" "$file")
		fi
		if ((CAN_DROP)); then
			s_cold=$(cold "${sq[@]}" "${sl_args[@]}")
			((${#rg_args[@]} == 0)) || r_cold=$(cold rg "${rg_args[@]}" "$file")
		fi
		all_bytes=$(query --from 24h -q '' --stats | json_num bytes_read)
		log "$name $q: sluice $s_warm s warm, $s_cold s cold; rg $r_warm s warm, $r_cold s cold; $n_s / $n_r matches"
		echo "| $label | $s_warm | $r_warm | $(ratio "$r_warm" "$s_warm") | $s_cold | $r_cold | $(ratio "$r_cold" "$s_cold") | $(mib "$read_bytes") MiB ($(ratio "$read_bytes" "$all_bytes") of a full scan) | $n_s / $n_r |" >>"$TABLE"
	done
	local rss_query
	rss_query=$(peak_rss_kib "$NODE_PID")
	echo >>"$TABLE"
	echo "Peak RSS of the ingeststore after the queries: $(awk -v k="$rss_query" 'BEGIN { printf "%.0f MiB", k / 1024 }')." >>"$TABLE"
	stop_pid "$NODE_PID" ingeststore
	rm -rf "$NODE_DATA"
}

gen_testsvc
gen_nginx
: >"$TABLE"
bench_corpus testsvc
bench_corpus nginx

GEN=$OUT/generated.md
{
	echo "## Store engine against ripgrep (bench/store.sh)"
	echo
	echo "Run $RUN_ID on $(nproc) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)."
	echo "Command: \`bash bench/store.sh\` (SLUICE_BENCH_STORE_MB=$STORE_MB, SLUICE_BENCH_NGINX_MB=$NGINX_MB, best of $REPS warm)."
	echo "sluice: \`sluice query --api .. --from 24h -q PATTERN [--regex] > /dev/null\` against a fresh ingeststore holding the corpus;"
	echo "rg: \`rg -F PATTERN corpus > /dev/null\` (or \`-e REGEX\`). \"sluice/rg\" is rg's time over sluice's (above 1: sluice faster)."
	echo "Cold: \`echo 3 > /proc/sys/vm/drop_caches\` before each single run.$( ((CAN_DROP)) || echo ' (Skipped in this run: no permission.)')"
	echo "\"bytes read\" is the query's \`bytes_read\` (from \`--stats\`) against that of a full scan."
	cat "$TABLE"
} >"$GEN"
write_generated "$OUTPUT" bench/store.sh "$GEN"
