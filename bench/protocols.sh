#!/usr/bin/env bash
# bench/protocols.sh: ingest over the Fluentd forward protocol and over
# octet-counted syslog, each on one connection, against plain lines of the
# same messages on the fast port, in one run. Rewrites its own generated
# section of BENCHMARKS.md.
#
#   bash bench/protocols.sh                          # 2,000,000 events per run
#   SLUICE_BENCH_EVENTS=200000 bash bench/protocols.sh   # quick validation
#
# Environment:
#   SLUICE_BENCH_EVENTS   events per run (default 2000000)
#   SLUICE_BENCH_SIZE     bytes per generated line (default 200)
#   SLUICE_BENCH_REPS     runs per measure; the best is reported (default 2)
#   SLUICE_BENCH_NO_BUILD=1  skip `cargo build --release`
#   SLUICE_BENCH_OUTPUT   file to write (default BENCHMARKS.md at the repo root)
#   SLUICE_BIN            binary to benchmark (default target/release/sluice)
#
# Each run: a fresh ingeststore, one `nc -N` connection sending a prepared
# file, timed from the start of the send until every event is queryable
# (`sluice query --stats` counts them). Inputs, from `sluice testsvc`:
#   lines       N lines of ~SIZE bytes                -> fast port (7651)
#   fluent      the same lines as Forward-mode frames of 1000 events with a
#               chunk (Fluent Bit's shape); the node acks every chunk
#                                                     -> fluent port (24224)
#   syslog-lf   the lines as RFC 5424 messages, one per line
#                                                     -> fast port (7651)
#   syslog      the same messages, octet-counted (rsyslog's omfwd framing)
#                                                     -> syslog port (5140)
# Ratios: fluent / lines and syslog / syslog-lf, in events per second.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$ROOT/bench/lib.sh"

EVENTS=${SLUICE_BENCH_EVENTS:-2000000}
SIZE=${SLUICE_BENCH_SIZE:-200}
REPS=${SLUICE_BENCH_REPS:-2}
OUTPUT=${SLUICE_BENCH_OUTPUT:-$ROOT/BENCHMARKS.md}
SLUICE=${SLUICE_BIN:-$ROOT/target/release/sluice}
QUERY_TIMEOUT=60
DEADLINE=$((120 + EVENTS / 10000))
RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/out/protocols-$RUN_ID
RESULTS=$OUT/results.tsv

cleanup() {
	stop_all
	[[ ${SLUICE_BENCH_KEEP:-0} == 1 ]] || rm -rf "$OUT"/data-* "$OUT"/input-*
}
trap cleanup EXIT

require_tools nc curl ss awk
build_sluice
mkdir -p "$OUT"

# ---------------------------------------------------------------- inputs --
gen() {
	local format=$1 file=$OUT/input-$1
	timeout 600 "$SLUICE" testsvc --rate 0 --count "$EVENTS" --size "$SIZE" --seed 7 \
		--format "$format" >"$file" || die "sluice testsvc --format $format failed"
	log "input $format: $(mib "$(file_size "$file")") MiB"
}

# ------------------------------------------------------------------ node --
start_node() {
	local name=$1 api fast durable batch fluent syslog
	read -r api fast durable batch fluent syslog < <(free_ports 6)
	NODE_API=127.0.0.1:$api
	NODE_LOG=$OUT/node-$name.log
	PORT_lines=$fast PORT_fluent=$fluent PORT_syslog=$syslog
	rm -rf "$OUT/data-$name"
	mkdir -p "$OUT/data-$name"
	"$SLUICE" ingeststore --data "$OUT/data-$name" --api "$NODE_API" --fast "127.0.0.1:$fast" \
		--durable "127.0.0.1:$durable" --batch "127.0.0.1:$batch" \
		--fluent "127.0.0.1:$fluent" --syslog "127.0.0.1:$syslog" >"$NODE_LOG" 2>&1 &
	NODE_PID=$!
	BG_PIDS+=("$NODE_PID")
	poll_until 60 0.1 "ingeststore ready" node_ready
}

node_ready() {
	kill -0 "$NODE_PID" 2>/dev/null || die "ingeststore exited: $(tail -n 20 "$NODE_LOG")"
	curl -fsS -o /dev/null --max-time 2 "http://$NODE_API/ready" 2>/dev/null
}

queryable() {
	timeout "$QUERY_TIMEOUT" "$SLUICE" query --api "$NODE_API" --from 1h -q '' --stats |
		json_num records_matched
}

# measure NAME INPUT PORTVAR: one timed run; appends a row to RESULTS.
measure() {
	local name=$1 input=$OUT/input-$2 portvar=PORT_$3 t0 t1 spid matched=0 end rss secs
	sync
	start_node "$name"
	local port=${!portvar}
	t0=$(now)
	nc -N 127.0.0.1 "$port" <"$input" >/dev/null &
	spid=$!
	BG_PIDS+=("$spid")
	end=$(($(date +%s) + DEADLINE))
	while ((matched < EVENTS)); do
		(($(date +%s) < end)) || die "$name: $matched of $EVENTS events queryable after ${DEADLINE}s"
		sleep 0.05
		matched=$(queryable) || die "$name: sluice query --stats failed"
		matched=${matched:-0}
	done
	t1=$(now)
	((matched == EVENTS)) || die "$name: $matched events queryable, $EVENTS sent"
	rss=$(peak_rss_kib "$NODE_PID")
	stop_pid "$spid" "nc"
	stop_pid "$NODE_PID" ingeststore
	rm -rf "$OUT/data-$name"
	secs=$(elapsed "$t0" "$t1")
	log "$name: $EVENTS events in ${secs}s = $(per_s "$EVENTS" "$secs") events/s, $(mib_per_s "$(file_size "$input")" "$secs") MiB/s of input, peak RSS $rss KiB"
	printf '%s\t%s\t%s\t%s\n' "$name" "$secs" "$(file_size "$input")" "$rss" >>"$RESULTS"
}

# best NAME -> the lowest time of NAME's runs
best() { awk -F'\t' -v n="$1" '$1 == n && (b == "" || $2 < b) { b = $2 } END { print b }' "$RESULTS"; }
field() { awk -F'\t' -v n="$1" -v f="$2" '$1 == n { v = $f } END { print v }' "$RESULTS"; }

# ---------------------------------------------------------------- report --
render() {
	local name secs eps mibs
	declare -A EPS
	echo "## Protocols: fluent forward and syslog on one connection (bench/protocols.sh)"
	echo
	echo "Run $RUN_ID: $EVENTS events of ~$SIZE bytes per run, best of $REPS, one \`nc -N\` connection,"
	echo "timed from the start of the send until every event is queryable."
	echo "Machine: $(nproc) cores, $(awk '/^model name/ { sub(/^[^:]*: /, ""); print; exit }' /proc/cpuinfo),"
	echo "$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM; sender, node and poller share it."
	echo "Command: \`bash bench/protocols.sh\`."
	echo
	echo "| input | port | events/s | MiB/s of input | peak RSS (MiB) |"
	echo "|---|---|---:|---:|---:|"
	for name in lines fluent syslog-lf syslog; do
		secs=$(best "$name")
		EPS[$name]=$(per_s "$EVENTS" "$secs")
		mibs=$(mib_per_s "$(field "$name" 3)" "$secs")
		local port=fast
		[[ $name == fluent ]] && port=fluent
		[[ $name == syslog ]] && port=syslog
		echo "| $name | $port | ${EPS[$name]} | $mibs | $(awk -v k="$(field "$name" 4)" 'BEGIN { printf "%.0f", k / 1024 }') |"
	done
	echo
	echo "- fluent forward mode: **${EPS[fluent]} events/s** (target 300,000), $(ratio "${EPS[fluent]}" "${EPS[lines]}")× plain lines of the same messages."
	echo "- octet-counted syslog: **$(ratio "${EPS[syslog]}" "${EPS[syslog-lf]}")×** the plain-lines rate of the same messages (target 0.8)."
	echo
}

write_report() {
	render >"$OUT/generated.md"
	write_generated "$OUTPUT" bench/protocols.sh "$OUT/generated.md"
}

# ------------------------------------------------------------------ main --
for format in lines fluent syslog-lf syslog; do
	gen "$format"
done
: >"$RESULTS"
for ((rep = 0; rep < REPS; rep++)); do
	measure lines lines lines
	measure fluent fluent fluent
	measure syslog-lf syslog-lf lines
	measure syslog syslog syslog
done
write_report
cat "$OUT/generated.md"
