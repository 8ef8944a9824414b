# shellcheck shell=bash
# Helpers for bench/run.sh. Sourced, not executed.
#
# Conventions: every wait has a deadline and calls `die` with a clear message
# when it passes; background processes are registered in BG_PIDS so the EXIT
# trap in run.sh stops exactly the processes this run started.

BG_PIDS=()

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
warn() { log "WARNING: $*"; }
die() {
	log "FAILED: $*"
	exit 1
}

now() { date +%s.%N; }
# elapsed T0 T1 -> seconds (3 decimals)
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
# mib_per_s BYTES SECONDS
mib_per_s() { awk -v b="$1" -v s="$2" 'BEGIN { if (s <= 0) print "n/a"; else printf "%.1f", b / 1048576 / s }'; }
# per_s COUNT SECONDS
per_s() { awk -v n="$1" -v s="$2" 'BEGIN { if (s <= 0) print "n/a"; else printf "%.0f", n / s }'; }
# ratio A B -> A / B (2 decimals)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b <= 0) print "n/a"; else printf "%.2f", a / b }'; }
# min_of A B -> the smaller number (A may be empty)
min_of() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b + 0 < a + 0) print b; else print a }'; }
# mib BYTES
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

# free_port -> a TCP port on 127.0.0.1 that was free a moment ago
free_port() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# free_ports N -> N distinct free ports, space separated
free_ports() {
	local n=$1 p ports=()
	while ((${#ports[@]} < n)); do
		p=$(free_port)
		[[ " ${ports[*]} " == *" $p "* ]] || ports+=("$p")
	done
	echo "${ports[*]}"
}

# start_ingeststore DATA LOG [ARGS...]: a fresh `sluice ingeststore` ($SLUICE)
# on DATA with its four ports free on 127.0.0.1, plus ARGS, its output in LOG.
# Sets NODE_PID, NODE_API and NODE_FAST, and returns once it is ready.
start_ingeststore() {
	local data=$1 log=$2 api fast durable batch
	shift 2
	read -r api fast durable batch < <(free_ports 4)
	NODE_API=127.0.0.1:$api
	NODE_FAST=127.0.0.1:$fast
	"$SLUICE" ingeststore --data "$data" --api "$NODE_API" --fast "$NODE_FAST" \
		--durable "127.0.0.1:$durable" --batch "127.0.0.1:$batch" "$@" >"$log" 2>&1 &
	NODE_PID=$!
	BG_PIDS+=("$NODE_PID")
	poll_until 60 0.1 "ingeststore ready" node_ready "$log"
}

# node_ready LOG: the node at $NODE_API answers /ready; dies, showing the
# end of LOG, if the node has exited (a bad flag, a port taken).
node_ready() {
	kill -0 "$NODE_PID" 2>/dev/null ||
		die "ingeststore exited at startup; last lines of $1:"$'\n'"$(tail -n 20 "$1")"
	curl -fsS -o /dev/null --max-time 2 "http://$NODE_API/ready"
}

# node_metric NAME: the value of an unlabelled metric of the node at
# $NODE_API (0 if absent).
node_metric() {
	curl -fsS --max-time 5 "http://$NODE_API/metrics" |
		awk -v m="$1" '$1 == m { printf "%.0f", $2; found = 1 } END { if (!found) print 0 }'
}

# is_v2_segment FILE: FILE is a v2 store segment (its header frame says SLUICE).
is_v2_segment() {
	[[ $(dd if="$1" bs=1 skip=8 count=6 status=none 2>/dev/null | tr -d '\0') == SLUICE ]]
}

# port_listening PORT: something listens on TCP PORT
port_listening() { ss -Hltn "sport = :$1" | grep -q .; }

# poll_until SECONDS INTERVAL DESCRIPTION CMD...: run CMD every INTERVAL
# seconds until it succeeds; die after SECONDS.
poll_until() {
	local secs=$1 interval=$2 what=$3
	shift 3
	local end
	end=$(($(date +%s) + secs))
	until "$@"; do
		(($(date +%s) < end)) || die "timed out after ${secs}s waiting for ${what}"
		sleep "$interval"
	done
}

# stop_pid PID [NAME]: SIGTERM, wait up to 20 s, then SIGKILL.
stop_pid() {
	local pid=$1 name=${2:-process} i
	kill -0 "$pid" 2>/dev/null || {
		wait "$pid" 2>/dev/null || true
		return 0
	}
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 200; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		warn "$name (pid $pid) ignored SIGTERM for 20s; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

# stop_all: stop every registered background process (EXIT trap).
stop_all() {
	local pid
	for pid in "${BG_PIDS[@]}"; do
		if kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null || true
		fi
	done
	sleep 0.2
	for pid in "${BG_PIDS[@]}"; do
		if kill -0 "$pid" 2>/dev/null; then
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
	BG_PIDS=()
}

# file_size PATH -> bytes (0 when missing)
file_size() { stat -c %s "$1" 2>/dev/null || echo 0; }

# file_has_bytes PATH N: PATH holds at least N bytes
file_has_bytes() { (($(file_size "$1") >= $2)); }

# peak_rss_kib PID -> VmHWM of a live process in KiB ("n/a" if unreadable)
peak_rss_kib() { awk '/^VmHWM:/ { print $2; found = 1 } END { if (!found) print "n/a" }' "/proc/$1/status" 2>/dev/null || echo n/a; }

# json_num FIELD: read one JSON object on stdin, print numeric FIELD (empty if absent)
json_num() { tr -d ' \n\t\r' | sed -n "s/.*\"$1\":\([0-9][0-9]*\).*/\1/p"; }

# rg_count ARGS...: number of matching lines (0 when none)
rg_count() {
	local out rc=0
	out=$(rg -c "$@") || rc=$?
	((rc <= 1)) || return "$rc"
	echo "${out:-0}"
}

# best_of N MAXRC CMD...: run CMD N times (stdout to /dev/null) and print the
# best wall time in seconds. Fails if CMD exits above MAXRC (rg exits 1 when
# nothing matches) or runs longer than QUERY_TIMEOUT seconds.
best_of() {
	local n=$1 maxrc=$2 i t0 t1 rc best=""
	shift 2
	for ((i = 0; i < n; i++)); do
		t0=$(now)
		rc=0
		timeout "${QUERY_TIMEOUT:-600}" "$@" >/dev/null || rc=$?
		t1=$(now)
		((rc <= maxrc)) || die "command failed or timed out (rc $rc): $*"
		best=$(min_of "$best" "$(elapsed "$t0" "$t1")")
	done
	echo "$best"
}

# run_and_stamp STAMP CMD...: run CMD and, when it exits, write
# "RC END-TIME CPU-SECONDS" to STAMP (atomically, via rename); CPU-SECONDS is
# CMD's user + system time. CMD's pid goes to STAMP.pid first. Meant to be
# started in the background with stdin redirected by the caller, e.g.
# `run_and_stamp f cmd <input &`; the subshell's fd 0 shares CMD's file
# offset, so `sender_pos` works on its pid. TERM and INT are passed on to CMD.
run_and_stamp() {
	local stamp=$1 pid rc=0
	shift
	"$@" <&0 &
	pid=$!
	# shellcheck disable=SC2064 # expand $pid now
	trap "kill -TERM $pid 2>/dev/null || true" TERM INT
	printf '%s\n' "$pid" >"$stamp.pid"
	wait "$pid" || rc=$?
	# wait returns early when a trapped signal arrives; wait for CMD itself.
	while kill -0 "$pid" 2>/dev/null; do
		rc=0
		wait "$pid" || rc=$?
	done
	local end
	end=$(now)
	# `times` without a fork: its second line is the children's user and system time.
	times >"$stamp.times"
	awk -v rc="$rc" -v end="$end" 'NR == 2 {
		n = 0
		for (i = 1; i <= 2; i++) { split($i, p, "m"); sub(/s$/, "", p[2]); n += p[1] * 60 + p[2] }
		printf "%s %s %.3f\n", rc, end, n
	}' "$stamp.times" >"$stamp.tmp"
	mv "$stamp.tmp" "$stamp"
}

# file_nonempty PATH
file_nonempty() { [[ -s $1 ]]; }

# cpu_ticks PID -> utime + stime of a live process in clock ticks (empty if gone)
cpu_ticks() {
	# Field 2 (comm) is in parentheses and may hold spaces: cut up to ") " first.
	sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }' || true
}

# read_chars PID -> bytes the process has read with read(2) and friends (rchar; empty if gone)
read_chars() { awk '/^rchar:/ { print $2 }' "/proc/$1/io" 2>/dev/null || true; }

# require_tools TOOL...: die naming the first tool not on PATH.
require_tools() {
	local tool
	for tool in "$@"; do
		command -v "$tool" >/dev/null || die "missing required tool: $tool"
	done
}

# build_sluice: `cargo build --release --locked` in $ROOT unless
# SLUICE_BENCH_NO_BUILD=1, then check that $SLUICE is there.
build_sluice() {
	if [[ ${SLUICE_BENCH_NO_BUILD:-0} == 1 ]]; then
		log "skipping build (SLUICE_BENCH_NO_BUILD=1)"
	else
		log "building sluice (release)"
		(cd "$ROOT" && cargo build --release --locked -q) || die "cargo build --release failed"
	fi
	[[ -x $SLUICE ]] || die "no binary at $SLUICE"
}

# write_generated OUTPUT SCRIPT GENFILE [HEADER_FN]: replace the section of
# OUTPUT between "<!-- BEGIN/END GENERATED: SCRIPT -->" with the contents of
# GENFILE, or append the section (after HEADER_FN's output when OUTPUT does
# not exist yet). Everything outside the markers is kept.
write_generated() {
	local output=$1 script=$2 gen=$3 header=${4:-}
	local begin="<!-- BEGIN GENERATED: $script -->" endm="<!-- END GENERATED: $script -->"
	local section tmp
	section=$(mktemp)
	{
		echo "$begin"
		cat "$gen"
		echo "$endm"
	} >"$section"
	tmp=$(mktemp "$output.XXXXXX")
	if [[ -f $output ]] && grep -qF "$begin" "$output"; then
		awk -v b="$begin" -v e="$endm" -v gen="$section" '
			$0 == b { while ((getline line < gen) > 0) print line; skip = 1; next }
			$0 == e { skip = 0; next }
			!skip { print }' "$output" >"$tmp"
	elif [[ -f $output ]]; then
		{ cat "$output" && echo && cat "$section"; } >"$tmp"
	else
		{ [[ -n $header ]] && "$header"; cat "$section"; } >"$tmp"
	fi
	rm -f "$section"
	mv "$tmp" "$output"
	log "wrote $output"
}
