#!/usr/bin/env bash
# bench/run.sh: measure sluice ingest, query and forwarder throughput on this
# machine and rewrite the generated section of BENCHMARKS.md.
#
#   bash bench/run.sh                      # 512 MiB per corpus
#   SLUICE_BENCH_MB=64 bash bench/run.sh   # quick validation run
#
# Environment:
#   SLUICE_BENCH_MB       corpus size in MiB (default 512), per corpus
#   SLUICE_BENCH_REPS     query repetitions, best is reported (default 3)
#   SLUICE_BENCH_TIMEOUT  deadline in seconds for one ingest (default 120 + 2 * MB)
#   SLUICE_BENCH_KEEP=1   keep corpora and data dirs under bench/out/
#   SLUICE_BENCH_FWD_RATE lines/s of the fixed-rate forwarder CPU run (default 250000, ~50 MB/s)
#   SLUICE_BENCH_FWD_SECS seconds of that run (default 10)
#   SLUICE_BENCH_NO_BUILD=1  skip `cargo build --release`
#   SLUICE_BENCH_OUTPUT   file to write (default BENCHMARKS.md at the repo root)
#   SLUICE_BIN            binary to benchmark (default target/release/sluice)
#
# See bench/README.md for what is measured and how.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$BENCH_DIR/lib.sh"

MB=${SLUICE_BENCH_MB:-512}
REPS=${SLUICE_BENCH_REPS:-3}
INGEST_TIMEOUT=${SLUICE_BENCH_TIMEOUT:-$((120 + 2 * MB))}
QUERY_TIMEOUT=${QUERY_TIMEOUT:-600}
FWD_RATE=${SLUICE_BENCH_FWD_RATE:-250000}
FWD_SECS=${SLUICE_BENCH_FWD_SECS:-10}
FWD_SIZE=200
OUTPUT=${SLUICE_BENCH_OUTPUT:-$ROOT/BENCHMARKS.md}
SIZES=(100 200)
SEED=1
SLUICE=${SLUICE_BIN:-$ROOT/target/release/sluice}
RUN_ID=$(date -u +%Y%m%d-%H%M%S)
OUT=$BENCH_DIR/out/run-$RUN_ID
RESULTS=$OUT/results

[[ $MB =~ ^[1-9][0-9]*$ ]] || die "SLUICE_BENCH_MB must be a positive integer, got '$MB'"
[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "SLUICE_BENCH_REPS must be a positive integer, got '$REPS'"
[[ $FWD_RATE =~ ^[1-9][0-9]*$ ]] || die "SLUICE_BENCH_FWD_RATE must be a positive integer, got '$FWD_RATE'"
[[ $FWD_SECS =~ ^[1-9][0-9]*$ ]] || die "SLUICE_BENCH_FWD_SECS must be a positive integer, got '$FWD_SECS'"

cleanup() {
	local rc=$?
	stop_all
	if [[ ${SLUICE_BENCH_KEEP:-0} != 1 && -d $OUT ]]; then
		rm -rf "$OUT"/corpus-* "$OUT"/data-* "$OUT"/nc-sink "$OUT"/fwd-fifo
	fi
	if ((rc != 0)); then
		log "run failed (exit $rc); logs are in $OUT"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- 1. setup --

check_tools() {
	local missing=()
	command -v nc >/dev/null || missing+=(netcat-openbsd)
	command -v rg >/dev/null || missing+=(ripgrep)
	if ((${#missing[@]})); then
		die "missing ${missing[*]}; install with: apt-get install -y netcat-openbsd ripgrep"
	fi
	nc -h 2>&1 | grep -q -- '-N' ||
		die "nc is not OpenBSD netcat (no -N); install with: apt-get install -y netcat-openbsd"
	require_tools python3 curl ss awk timeout mkfifo getconf
}

check_disk() {
	# corpora + nc sink + two data dirs, with slack for indexes
	local need_kib=$((MB * 1024 * 6)) avail_kib
	avail_kib=$(df -Pk "$BENCH_DIR" | awk 'NR == 2 { print $4 }')
	((avail_kib > need_kib)) ||
		die "need about $((need_kib / 1024)) MiB free under $BENCH_DIR, have $((avail_kib / 1024)) MiB"
}

# ------------------------------------------------------------- 2. corpora --

declare -A CORPUS_LINES CORPUS_BYTES ERROR_LINES

gen_corpus() {
	local size=$1 file=$OUT/corpus-$1.log count
	count=$((MB * 1048576 / (size + 1)))
	log "generating $file: $count lines of ~$size bytes"
	timeout 600 "$SLUICE" testsvc --size "$size" --rate 0 --count "$count" --seed "$SEED" >"$file" ||
		die "sluice testsvc failed (rc $?)"
	CORPUS_LINES[$size]=$(wc -l <"$file")
	CORPUS_BYTES[$size]=$(file_size "$file")
	((CORPUS_LINES[$size] == count)) ||
		die "testsvc wrote ${CORPUS_LINES[$size]} lines, expected $count"
	log "corpus-$size: ${CORPUS_LINES[$size]} lines, $(mib "${CORPUS_BYTES[$size]}") MiB"
}

# -------------------------------------------------------------- 3. ingest --

# Transport ceiling: one nc connection into `nc -l` writing to a file; best of 3.
bench_nc() {
	local size=$1 i secs best=""
	local bytes=${CORPUS_BYTES[$size]} lines=${CORPUS_LINES[$size]}
	for ((i = 0; i < 3; i++)); do
		nc_once "$size"
		best=$(min_of "$best" "$NC_SECS")
	done
	log "nc corpus-$size: best ${best}s, $(mib_per_s "$bytes" "$best") MiB/s"
	printf 'nc\t%s\t%s\t%s\t%s\t-\t-\n' "$size" "$bytes" "$lines" "$best" >>"$RESULTS/ingest.tsv"
}

# nc_once SIZE: one transport run; sets NC_SECS
nc_once() {
	local size=$1 file=$OUT/corpus-$1.log sink=$OUT/nc-sink port lpid cpid t0 t1
	local bytes=${CORPUS_BYTES[$size]}
	rm -f "$sink"
	sync
	port=$(free_port)
	nc -d -l 127.0.0.1 "$port" </dev/null >"$sink" &
	lpid=$!
	BG_PIDS+=("$lpid")
	poll_until 10 0.02 "nc listener on port $port" port_listening "$port"
	t0=$(now)
	nc -N 127.0.0.1 "$port" <"$file" >/dev/null &
	cpid=$!
	BG_PIDS+=("$cpid")
	poll_until "$INGEST_TIMEOUT" 0.01 "nc sink to receive $bytes bytes" file_has_bytes "$sink" "$bytes"
	t1=$(now)
	stop_pid "$cpid" "nc client"
	stop_pid "$lpid" "nc listener"
	rm -f "$sink"
	NC_SECS=$(elapsed "$t0" "$t1")
}

# start_node NAME: fresh ingeststore on $OUT/data-NAME; sets NODE_PID, NODE_API, NODE_FAST,
# NODE_BATCH, NODE_LOG
start_node() {
	local name=$1 api fast durable batch
	read -r api fast durable batch < <(free_ports 4)
	NODE_API=127.0.0.1:$api
	NODE_FAST=127.0.0.1:$fast
	NODE_BATCH=127.0.0.1:$batch
	NODE_LOG=$OUT/node-$name.log
	rm -rf "$OUT/data-$name"
	mkdir -p "$OUT/data-$name"
	"$SLUICE" ingeststore --data "$OUT/data-$name" --api "$NODE_API" --fast "$NODE_FAST" \
		--durable "127.0.0.1:$durable" --batch "$NODE_BATCH" >"$NODE_LOG" 2>&1 &
	NODE_PID=$!
	BG_PIDS+=("$NODE_PID")
	poll_until 60 0.1 "ingeststore ready at http://$NODE_API/ready" node_ready
	log "ingeststore $name: pid $NODE_PID api $NODE_API fast $NODE_FAST batch $NODE_BATCH"
}

node_alive() {
	kill -0 "$NODE_PID" 2>/dev/null ||
		die "ingeststore (pid $NODE_PID) exited; last lines of $NODE_LOG:"$'\n'"$(tail -n 20 "$NODE_LOG")"
}

node_ready() {
	node_alive
	curl -fsS -o /dev/null --max-time 2 "http://$NODE_API/ready" 2>/dev/null
}

# stats QUERY [ARGS...] -> the --stats JSON object
stats() {
	local q=$1
	shift
	timeout "$QUERY_TIMEOUT" "$SLUICE" query --api "$NODE_API" --from 1h -q "$q" --stats "$@"
}

# sender_pos PID -> bytes the process has read from its stdin (empty if gone)
sender_pos() { awk '/^pos:/ { print $2 }' "/proc/$1/fdinfo/0" 2>/dev/null || true; }

# wait_queryable SIZE SPID WHAT CHECK...: poll the node until every line of
# corpus-SIZE is queryable. SPID is the sender, reading the corpus on its fd 0;
# polling starts once it has read all of it or has exited. CHECK (a command)
# runs on every round and should die if the sender failed. Sets T_SENT (when
# the sender had read everything), MATCHED and STATS_JSON.
wait_queryable() {
	local size=$1 spid=$2 what=$3 end pos=""
	shift 3
	local bytes=${CORPUS_BYTES[$size]} lines=${CORPUS_LINES[$size]}
	T_SENT="" MATCHED=0 STATS_JSON=""
	end=$(($(date +%s) + INGEST_TIMEOUT))
	while :; do
		node_alive
		"$@"
		# The send is over when the sender has exited, or has read all of its
		# input (nc then waits for the server to close the connection).
		if [[ -z $T_SENT ]]; then
			pos=$(sender_pos "$spid")
			if ! kill -0 "$spid" 2>/dev/null || [[ $pos == "$bytes" ]]; then
				T_SENT=$(now)
			fi
		fi
		if [[ -n $T_SENT ]]; then
			STATS_JSON=$(stats '') || die "sluice query --stats failed (rc $?) during ingest of corpus-$size"
			MATCHED=$(json_num records_matched <<<"$STATS_JSON")
			[[ -n $MATCHED ]] || die "no records_matched in stats output: $STATS_JSON"
			((MATCHED < lines)) || break
		fi
		(($(date +%s) < end)) || die "ingest of corpus-$size not queryable after ${INGEST_TIMEOUT}s:" \
			"$what read ${pos:-all} of $bytes bytes, $MATCHED of $lines records queryable"
		sleep 0.1
	done
	((MATCHED == lines)) || warn "corpus-$size: $MATCHED records queryable, $lines lines sent"
}

# sluice ingest: send the corpus to the fast port, poll until all of it is queryable.
bench_sluice_ingest() {
	local size=$1 file=$OUT/corpus-$1.log spid t0 t1 secs send_secs
	local bytes=${CORPUS_BYTES[$size]} lines=${CORPUS_LINES[$size]} rss
	sync
	start_node "ingest-$size"
	t0=$(now)
	nc -N "${NODE_FAST%:*}" "${NODE_FAST##*:}" <"$file" >/dev/null &
	spid=$!
	BG_PIDS+=("$spid")
	wait_queryable "$size" "$spid" nc true
	t1=$(now)
	# nc -N exits once the server closes the connection; give it a moment.
	local i
	for ((i = 0; i < 50; i++)); do
		kill -0 "$spid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$spid" 2>/dev/null; then
		warn "the fast port kept the connection open 5s after all data was queryable; stopping nc"
		stop_pid "$spid" "nc sender"
	else
		wait "$spid" || warn "nc sender exited with status $?"
	fi
	rss=$(peak_rss_kib "$NODE_PID")
	secs=$(elapsed "$t0" "$t1")
	send_secs=$(elapsed "$t0" "$T_SENT")
	log "sluice corpus-$size: sent in ${send_secs}s, queryable after ${secs}s, $(mib_per_s "$bytes" "$secs") MiB/s, peak RSS ${rss} KiB"
	printf 'sluice\t%s\t%s\t%s\t%s\t%s\t%s\n' "$size" "$bytes" "$lines" "$secs" "$send_secs" "$rss" >>"$RESULTS/ingest.tsv"
	printf '%s\n' "$STATS_JSON" >"$RESULTS/stats-$size.json"
}

# --------------------------------------------------------------- 4. query --

# bench_query NAME MODE PATTERN: MODE is literal or regex
bench_query() {
	local name=$1 mode=$2 pat=$3 file=$OUT/corpus-100.log
	local bytes=${CORPUS_BYTES[100]} s_secs r_secs json s_count r_count scanned ok
	local extra=() r_args=(--no-config)
	if [[ $mode == regex ]]; then
		extra+=(--regex)
	else
		r_args+=(-F)
	fi
	log "query $name: $pat"
	s_secs=$(best_of "$REPS" 0 "$SLUICE" query --api "$NODE_API" --from 1h -q "$pat" "${extra[@]}")
	r_secs=$(best_of "$REPS" 1 rg "${r_args[@]}" -- "$pat" "$file")
	json=$(stats "$pat" "${extra[@]}") || die "sluice query --stats failed for $name"
	s_count=$(json_num records_matched <<<"$json")
	scanned=$(json_num bytes <<<"$json")
	r_count=$(rg_count "${r_args[@]}" -- "$pat" "$file") || die "rg -c failed for $name"
	ok=yes
	if [[ $s_count != "$r_count" ]]; then
		ok=no
		warn "query $name: sluice matched ${s_count:-?} records, rg -c counted $r_count lines"
	fi
	log "query $name: sluice ${s_secs}s rg ${r_secs}s, matches sluice=${s_count:-?} rg=$r_count"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$mode" "$pat" "$bytes" "$s_secs" "$r_secs" \
		"${s_count:-?}" "$r_count" "${scanned:-?}" >>"$RESULTS/query.tsv"
	[[ $ok == yes ]] || printf '%s\n' "$name" >>"$RESULTS/query-mismatch"
}

rare_token() {
	local file=$OUT/corpus-100.log bytes=${CORPUS_BYTES[100]} tok
	# A request id from a third into the corpus; the generator cycles a
	# ~16 MiB pool, so it occurs about once per pool cycle.
	tok=$(tail -c +$((bytes / 3)) "$file" | head -c 4000000 | rg -o -m1 'req-[0-9a-f]{16}' || true)
	[[ -n $tok ]] || die "could not find a request id in corpus-100"
	echo "$tok"
}

# ----------------------------------------------------------- 5. forward --

# forward_ok STAMP ERRLOG WHAT: die if the forwarder behind STAMP exited with a failure.
forward_ok() {
	local rc
	[[ -s $1 ]] || return 0
	read -r rc _ <"$1"
	((rc == 0)) || die "$3 exited with status $rc; last lines of its stderr ($2):"$'\n'"$(tail -n 20 "$2")"
}

# forward_exited STAMP ERRLOG WHAT: the forwarder has exited successfully (dies on failure).
forward_exited() {
	forward_ok "$@"
	[[ -s $1 ]]
}

# check_acked ERRLOG LINES WHAT: the --json counts (last stderr line) say every line was read and acked.
check_acked() {
	local last nread nacked
	last=$(tail -n 1 "$1")
	nread=$(json_num read <<<"$last")
	nacked=$(json_num acked <<<"$last")
	[[ $nread == "$2" && $nacked == "$2" ]] ||
		warn "$3: expected $2 lines read and acked, the forwarder reports read=${nread:-?} acked=${nacked:-?}: $last"
}

# drop_data NAME: delete $OUT/data-NAME of a stopped node (unless SLUICE_BENCH_KEEP=1).
drop_data() {
	[[ ${SLUICE_BENCH_KEEP:-0} == 1 ]] || rm -rf "$OUT/data-$1"
}

# bench_forward SIZE MODE: corpus-SIZE through `sluice forward` into a fresh node. MODE is
# tcp (plain lines to the fast port) or a batch protocol guarantee (write, fsync).
bench_forward() {
	local size=$1 mode=$2 file=$OUT/corpus-$1.log name=fwd-$2-$1
	local bytes=${CORPUS_BYTES[$size]} lines=${CORPUS_LINES[$size]}
	local stamp=$OUT/$name.exit errlog=$OUT/$name.stderr what="sluice forward ($2)"
	local args=() spid t0 t1 rc t_exit cpu secs exit_secs sent_secs
	sync
	start_node "$name"
	if [[ $mode == tcp ]]; then
		args=("tcp://$NODE_FAST")
	else
		args=("sluice://$NODE_BATCH" --guarantee "$mode" --json)
	fi
	rm -f "$stamp" "$stamp".*
	t0=$(now)
	run_and_stamp "$stamp" "$SLUICE" forward "${args[@]}" <"$file" 2>"$errlog" &
	spid=$!
	BG_PIDS+=("$spid")
	wait_queryable "$size" "$spid" "$what" forward_ok "$stamp" "$errlog" "$what"
	t1=$(now)
	poll_until "$INGEST_TIMEOUT" 0.02 "$what to exit (all records were queryable)" \
		forward_exited "$stamp" "$errlog" "$what"
	wait "$spid" || true
	read -r rc t_exit cpu <"$stamp"
	[[ $mode == tcp ]] || check_acked "$errlog" "$lines" "$what"
	secs=$(elapsed "$t0" "$t1")
	exit_secs=$(elapsed "$t0" "$t_exit")
	sent_secs=$(elapsed "$t0" "$T_SENT")
	log "forward $mode corpus-$size: input read after ${sent_secs}s, exited (rc $rc) after ${exit_secs}s," \
		"queryable after ${secs}s, $(mib_per_s "$bytes" "$secs") MiB/s, forwarder CPU ${cpu}s"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$size" "$bytes" "$lines" "$exit_secs" "$secs" \
		"$sent_secs" "$cpu" >>"$RESULTS/forward.tsv"
	stop_pid "$NODE_PID" ingeststore
	drop_data "$name"
}

# bench_forward_cpu: `sluice testsvc --rate FWD_RATE` writes into a FIFO read by
# `sluice forward sluice://BATCH --guarantee write` for FWD_SECS seconds. utime + stime
# of the forwarder, the node and testsvc are sampled from /proc/PID/stat every 50 ms;
# cores = CPU time / wall time between the first sample after the forwarder has read
# 1 MiB (rchar in /proc/PID/io) and the last sample before testsvc exits.
bench_forward_cpu() {
	local size=$FWD_SIZE count=$((FWD_RATE * FWD_SECS)) name=fwd-cpu
	local fifo=$OUT/fwd-fifo stamp=$OUT/fwd-cpu.exit errlog=$OUT/fwd-cpu.stderr
	local what="sluice forward (write) fed by testsvc --rate $FWD_RATE"
	local hz spid ppid fpid end t ft fr nt pt rc t_exit cpu nominal
	local tA="" fA rA nA pA tB="" fB rB nB pB
	hz=$(getconf CLK_TCK)
	nominal=$(awk -v r="$FWD_RATE" -v b="${CORPUS_BYTES[$size]}" -v n="${CORPUS_LINES[$size]}" \
		'BEGIN { printf "%.1f", r * b / n / 1e6 }')
	start_node "$name"
	rm -f "$fifo" "$stamp" "$stamp".*
	mkfifo "$fifo"
	log "forwarder CPU: testsvc --size $size --rate $FWD_RATE --count $count (nominal $nominal MB/s for ${FWD_SECS}s)"
	run_and_stamp "$stamp" "$SLUICE" forward "sluice://$NODE_BATCH" --guarantee write --json <"$fifo" 2>"$errlog" &
	spid=$!
	BG_PIDS+=("$spid")
	"$SLUICE" testsvc --size "$size" --rate "$FWD_RATE" --count "$count" --seed "$SEED" >"$fifo" &
	ppid=$!
	BG_PIDS+=("$ppid")
	poll_until 10 0.02 "the forwarder to start ($stamp.pid)" file_nonempty "$stamp.pid"
	fpid=$(<"$stamp.pid")
	end=$(($(date +%s) + 2 * FWD_SECS + 60))
	while kill -0 "$ppid" 2>/dev/null; do
		node_alive
		forward_ok "$stamp" "$errlog" "$what"
		t=$(now)
		ft=$(cpu_ticks "$fpid")
		fr=$(read_chars "$fpid")
		nt=$(cpu_ticks "$NODE_PID")
		pt=$(cpu_ticks "$ppid")
		if [[ -n $ft && -n $fr && -n $nt && -n $pt ]]; then
			if [[ -z $tA ]]; then
				if ((fr >= 1048576)); then
					tA=$t fA=$ft rA=$fr nA=$nt pA=$pt
				fi
			else
				tB=$t fB=$ft rB=$fr nB=$nt pB=$pt
			fi
		fi
		(($(date +%s) < end)) || die "$what: testsvc still running after $((2 * FWD_SECS + 60))s"
		sleep 0.05
	done
	rc=0
	wait "$ppid" || rc=$?
	((rc == 0)) || die "sluice testsvc exited with status $rc during the forwarder CPU run"
	poll_until 60 0.02 "$what to exit after its input ended" forward_exited "$stamp" "$errlog" "$what"
	wait "$spid" || true
	read -r rc t_exit cpu <"$stamp"
	check_acked "$errlog" "$count" "$what"
	[[ -n $tB ]] || die "$what: too few CPU samples (run longer with SLUICE_BENCH_FWD_SECS)"
	awk -v hz="$hz" -v nominal="$nominal" -v tA="$tA" -v tB="$tB" -v t_exit="$t_exit" -v cpu="$cpu" \
		-v fA="$fA" -v fB="$fB" -v rA="$rA" -v rB="$rB" -v nA="$nA" -v nB="$nB" -v pA="$pA" -v pB="$pB" 'BEGIN {
		w = tB - tA
		printf "%s\t%.1f\t%.2f\t%.3f\t%.3f\t%.3f\t%.2f\t%.2f\n", nominal, (rB - rA) / w / 1e6, w,
			(fB - fA) / hz / w, (nB - nA) / hz / w, (pB - pA) / hz / w, cpu, t_exit - tA
	}' >"$RESULTS/forward-cpu.tsv"
	log "forwarder CPU: $(awk -F'\t' '{ printf "input %s MB/s (nominal %s) over %ss: forwarder %s cores, ingeststore %s, testsvc %s; forwarder %ss CPU over %ss", $2, $1, $3, $4, $5, $6, $7, $8 }' "$RESULTS/forward-cpu.tsv")"
	stop_pid "$NODE_PID" ingeststore
	drop_data "$name"
	rm -f "$fifo"
}

# -------------------------------------------------------------- 6. report --

machine_info() {
	local model mem
	model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
	mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
	echo "- CPU: ${model:-unknown} ($(nproc) cores available to the run)"
	echo "- Memory: $mem"
	echo "- Kernel: $(uname -sr)"
	echo "- Disk under bench/out: $(df -PT "$BENCH_DIR" | awk 'NR == 2 { print $2 }')"
	echo "- Rust: $(rustc --version 2>/dev/null || echo unknown)"
	echo "- Tools: $(rg --version | sed -n 1p), OpenBSD netcat $(dpkg-query -W -f '${Version}' netcat-openbsd 2>/dev/null || echo '?')"
}

render() {
	local commit
	commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "uncommitted")
	if [[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null || true) ]]; then
		commit="$commit (dirty tree)"
	fi
	echo "## Results"
	echo
	echo "Generated by \`bench/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit."
	echo "Corpus size: $MB MiB per corpus (\`SLUICE_BENCH_MB=$MB\`), query repetitions: $REPS (best reported)."
	echo
	echo "### Machine"
	echo
	machine_info
	echo
	echo "### Corpora"
	echo
	echo "Generated with \`sluice testsvc --size SIZE --rate 0 --count N --seed $SEED\`."
	echo
	echo "| corpus | lines | MiB | mean line bytes | lines with ERROR |"
	echo "|---|---:|---:|---:|---:|"
	local size
	for size in "${SIZES[@]}"; do
		printf '| %s-byte | %s | %s | %s | %s |\n' "$size" "${CORPUS_LINES[$size]}" "$(mib "${CORPUS_BYTES[$size]}")" \
			"$(awk -v b="${CORPUS_BYTES[$size]}" -v n="${CORPUS_LINES[$size]}" 'BEGIN { printf "%.1f", b / n - 1 }')" \
			"${ERROR_LINES[$size]}"
	done
	echo
	echo "### Ingest"
	echo
	echo "- nc: \`nc -d -l 127.0.0.1 PORT > sink\` fed by \`nc -N 127.0.0.1 PORT < corpus\`; time until the sink holds every byte, best of 3."
	echo "- sluice: fresh \`sluice ingeststore --data DIR --api .. --fast .. --durable ..\`, then \`nc -N 127.0.0.1 FAST < corpus\`,"
	echo "  polling \`sluice query --api .. --from 1h -q '' --stats\` every 100 ms (once nc has read all its input) until"
	echo "  \`records_matched\` equals the line count. Time is from the start of the send to the first poll that sees every record,"
	echo "  so it includes that final full-scan stats query. \"sent\" is when \`nc\` had read the whole corpus (or exited)."
	echo "- Peak RSS is \`VmHWM\` from \`/proc/PID/status\` of the ingeststore, read right after the data became queryable."
	echo
	echo "| corpus | transport (nc) MiB/s | sluice sent (s) | sluice queryable (s) | sluice MiB/s | sluice records/s | sluice/nc | ingeststore peak RSS |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|"
	for size in "${SIZES[@]}"; do
		awk -F'\t' -v size="$size" '
			$2 == size && $1 == "nc" { nc = $3 / 1048576 / $5 }
			$2 == size && $1 == "sluice" { b = $3; n = $4; s = $5; sent = $6; rss = $7 }
			END {
				sl = b / 1048576 / s
				printf "| %s-byte | %.1f | %.2f | %.2f | %.1f | %.0f | %.2f | %s |\n", size, nc, sent, s, sl, n / s, sl / nc,
					(rss == "n/a" ? "n/a" : sprintf("%.0f MiB", rss / 1024))
			}' "$RESULTS/ingest.tsv"
	done
	echo
	echo "### Query"
	echo
	echo "Against the ingeststore holding the 100-byte corpus, versus ripgrep over the same corpus file (in page cache)."
	echo "sluice: \`sluice query --api .. --from 1h -q PATTERN [--regex] > /dev/null\`;"
	echo "rg: \`rg --no-config [-F] -- PATTERN corpus > /dev/null\` (literals with \`-F\`). Wall time, best of $REPS."
	echo "MiB/s is corpus MiB divided by wall time for both tools; \"sluice/rg\" is the throughput ratio (above 1: sluice faster)."
	echo "Match counts: \`records_matched\` of \`--stats\` versus \`rg -c\`."
	echo
	echo "| query | pattern | sluice (s) | sluice MiB/s | rg (s) | rg MiB/s | sluice/rg | matches sluice / rg |"
	echo "|---|---|---:|---:|---:|---:|---:|---|"
	awk -F'\t' '{
		b = $4; s = $5; r = $6
		flag = ($7 == $8) ? "" : " **MISMATCH**"
		pat = $3; gsub(/\|/, "\\|", pat)
		printf "| %s | `%s` | %.3f | %.1f | %.3f | %.1f | %.2f | %s / %s%s |\n", $1, pat, s, b / 1048576 / s, r, b / 1048576 / r, r / s, $7, $8, flag
	}' "$RESULTS/query.tsv"
	if [[ -s $RESULTS/query-mismatch ]]; then
		echo
		echo "**Warning:** match counts differ for: $(paste -sd, "$RESULTS/query-mismatch")."
	fi
	echo
	echo "Peak RSS of the ingeststore after the queries: $(awk '{ printf "%.0f MiB", $1 / 1024 }' "$RESULTS/rss-after-query")."
	echo
	render_forward
}

render_forward() {
	local size
	echo "### Forwarder and batch protocol"
	echo
	echo "Each run starts a fresh ingeststore (as in Ingest, plus \`--batch 127.0.0.1:PORT\`) and feeds it one corpus file:"
	echo
	echo "- tcp: \`sluice forward tcp://127.0.0.1:FAST < corpus\` (plain lines to the fast port; the baseline of this section);"
	echo "- write, fsync: \`sluice forward sluice://127.0.0.1:BATCH --guarantee write|fsync --json < corpus\` (the batch protocol,"
	echo "  default batching: 1 MiB batches, 100 ms linger, 64 MiB queue)."
	echo
	echo "\"exited\" is when the forwarder process exited: for sluice://, every batch was acknowledged (exit status 0 and"
	echo "\`read\` = \`acked\` = line count are checked); for tcp://, every line was sent and the node closed the connection."
	echo "\"queryable\" is measured as in Ingest (polling starts once the forwarder has read all of its input), from the"
	echo "start of the forwarder. MiB/s and records/s divide the corpus by the queryable time; \"÷ tcp\" is that MiB/s over the"
	echo "tcp row's for the same corpus. \"fwd CPU\" is the forwarder's user + system time over its whole run."
	echo
	echo "| corpus | forwarder | exited (s) | queryable (s) | MiB/s | records/s | ÷ tcp | target | fwd CPU (s) |"
	echo "|---|---|---:|---:|---:|---:|---:|---|---:|"
	for size in "${SIZES[@]}"; do
		awk -F'\t' -v size="$size" '
			$2 != size { next }
			{ mode[++n] = $1; b[n] = $3; l[n] = $4; ex[n] = $5; q[n] = $6; cpu[n] = $8 }
			$1 == "tcp" { base = $3 / 1048576 / $6 }
			END {
				for (i = 1; i <= n; i++) {
					m = b[i] / 1048576 / q[i]
					if (mode[i] == "tcp") { label = "tcp:// (fast port)"; r = "1.00"; target = "baseline" }
					else {
						label = "sluice:// " mode[i]
						r = base > 0 ? sprintf("%.2f", m / base) : "n/a"
						want = mode[i] == "write" ? 0.8 : (mode[i] == "fsync" ? 0.5 : 0)
						target = want ? sprintf("≥ %.1f: %s", want, (base > 0 && m / base >= want) ? "met" : "**missed**") : "-"
					}
					printf "| %s-byte | %s | %.2f | %.2f | %.1f | %.0f | %s | %s | %.2f |\n", size, label, ex[i], q[i], m, l[i] / q[i], r, target, cpu[i]
				}
			}' "$RESULTS/forward.tsv"
	done
	echo
	echo "#### Forwarder CPU at a fixed input rate"
	echo
	echo "\`sluice testsvc --size $FWD_SIZE --rate $FWD_RATE --count $((FWD_RATE * FWD_SECS)) --seed $SEED > FIFO\` and"
	echo "\`sluice forward sluice://127.0.0.1:BATCH --guarantee write --json < FIFO\` into a fresh ingeststore; the nominal"
	echo "input is the rate times the mean line of the $FWD_SIZE-byte corpus, for ${FWD_SECS}s. utime + stime of each process"
	echo "is sampled from \`/proc/PID/stat\` (CLK_TCK $(getconf CLK_TCK)) every 50 ms; cores = CPU time / wall time over the window"
	echo "from the first sample after the forwarder had read 1 MiB (\`rchar\` in \`/proc/PID/io\`) to the last sample before"
	echo "testsvc exited, and \"achieved\" is the forwarder's \`rchar\` growth over that window. The three processes share the"
	echo "machine's $(nproc) cores. \"whole run\" is the forwarder's total CPU (from the shell's \`times\`) over the time from the"
	echo "window's start to its exit (all acked). MB = 10^6 bytes."
	echo
	echo "| input nominal MB/s | achieved MB/s | window (s) | forwarder cores | target | ingeststore cores | testsvc cores | forwarder whole run |"
	echo "|---:|---:|---:|---:|---|---:|---:|---|"
	awk -F'\t' '{
		printf "| %s | %s | %s | %.2f | ≤ 0.3: %s | %.2f | %.2f | %.2f s CPU / %.2f s = %.2f cores |\n", $1, $2, $3, $4,
			($4 <= 0.3 ? "met" : "**missed**"), $5, $6, $7, $8, ($8 > 0 ? $7 / $8 : 0)
	}' "$RESULTS/forward-cpu.tsv"
}

default_header() {
	cat <<'EOF'
# sluice benchmarks

Numbers in the generated section below come from one run of `bench/run.sh` on
the machine it describes; rerun it to refresh them (`bash bench/run.sh`, or
`SLUICE_BENCH_MB=64 bash bench/run.sh` for a quick check). Only the section
between the markers is rewritten; this header is kept.

## Method

- **Corpora.** `sluice testsvc` writes two corpora (~100-byte and ~200-byte
  lines, 512 MiB each by default) of realistic mixed-format log lines: logfmt,
  JSON lines, nginx combined access logs and plain text, with about 1% of lines
  containing the token `ERROR`.
- **Ingest.** The transport ceiling is a single `nc` connection into `nc -l`
  writing to a file. sluice is measured end to end: the same corpus is sent
  with `nc` to the fast (newline-delimited) port of a fresh `ingeststore`, and
  the clock stops when `sluice query --stats -q ''` reports every record, i.e.
  when the data is *queryable*, not merely received.
- **Query.** With the 100-byte corpus ingested, three searches (a rare literal,
  the literal `ERROR`, and a regex) are timed with `sluice query` against the
  running node and with `rg` over the corpus file; both read warm data from
  the page cache, so this compares scan engines, not disks. The match counts
  of the two must agree.
- Times are wall-clock (`date +%s.%N`), best of 3 for queries. MiB/s always
  divides the *corpus* size by the wall time, so sluice and the baseline are
  directly comparable. The machine is small (2 cores), and the load generator,
  the sender and the node share it.

EOF
}

write_report() {
	render >"$OUT/generated.md"
	write_generated "$OUTPUT" bench/run.sh "$OUT/generated.md" default_header
}

# ---------------------------------------------------------------- main --

main() {
	check_tools
	mkdir -p "$RESULTS"
	exec > >(tee -a "$OUT/run.log") 2>&1
	log "run $RUN_ID: $MB MiB per corpus, output in $OUT"
	check_disk
	build_sluice

	local size
	for size in "${SIZES[@]}"; do
		gen_corpus "$size"
		ERROR_LINES[$size]=$(rg_count --no-config -F ERROR "$OUT/corpus-$size.log")
	done

	for size in "${SIZES[@]}"; do
		bench_nc "$size"
	done

	# 100-byte corpus: ingest, then the query benchmarks on the same node.
	bench_sluice_ingest 100
	local tok
	tok=$(rare_token)
	bench_query "rare literal" literal "$tok"
	bench_query "ERROR" literal "ERROR"
	bench_query "regex" regex 'ERROR.*timeout|status=5[0-9][0-9]'
	peak_rss_kib "$NODE_PID" >"$RESULTS/rss-after-query"
	stop_pid "$NODE_PID" ingeststore

	local s
	for s in "${SIZES[@]:1}"; do
		bench_sluice_ingest "$s"
		stop_pid "$NODE_PID" ingeststore
	done

	# Forwarder and batch protocol: a fresh node per run.
	local mode
	for s in "${SIZES[@]}"; do
		for mode in tcp write fsync; do
			bench_forward "$s" "$mode"
		done
	done
	bench_forward_cpu

	write_report
	log "done; results in $RESULTS"
}

main "$@"
