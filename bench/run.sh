#!/usr/bin/env bash
# Nightjar overhead benchmark: each workload under each monitor, R interleaved reps,
# reported as the median ratio to the no-monitor baseline. See bench/README.md.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
NIGHTJAR_BIN=${NIGHTJAR_BIN:-$REPO/target/release/nightjar}
HOOK_FLOOR_BIN=${HOOK_FLOOR_BIN:-$(dirname "$NIGHTJAR_BIN")/nj-hook-floor}
REPS=${REPS:-5}
EXEC_N=${EXEC_N:-1500}          # fork+exec of /bin/true   (~1.3 s baseline here)
OPEN_N=${OPEN_N:-400000}        # open+close of one file   (~1 s)
CONNECT_N=${CONNECT_N:-15000}   # TCP connect/accept/close (~1.5 s)
HTTP_SECS=${HTTP_SECS:-5} HTTP_THREADS=${HTTP_THREADS:-2} HTTP_CONNS=${HTTP_CONNS:-32}
WORKLOADS=exec,open,connect,http
MONITORS=none,nightjar,nightjar-all-opens,hook-floor,auditd,bpftrace-noop,bpftrace-count,bpftrace-print
# hook-floor: an empty program on the agent's syscall hook (nj-hook-floor, built beside
# nightjar): what that hook costs before any monitor work.
# nightjar-base: the same default configuration from $NIGHTJAR_BASE_BIN (another commit's
# build), for before/after in one run; not in the default set.
# nightjar-probe-read: the default configuration with the probe-read build (kernels < 6.2).
# nightjar-normal-cpu: the default configuration with --cpu-priority normal (no yielding).
ALL_MONITORS=$MONITORS,nightjar-base,nightjar-probe-read,nightjar-normal-cpu

usage() {
  cat <<EOF
usage: bash bench/run.sh [--only exec,open,connect,http] [--monitors m1,m2] [--reps R] [--quick]
       [--exec-n N] [--open-n N] [--connect-n N] [--http-secs S]
monitors: $ALL_MONITORS ('none' is always added: it is the baseline)
env: NIGHTJAR_BIN NIGHTJAR_BASE_BIN HOOK_FLOOR_BIN REPS EXEC_N OPEN_N CONNECT_N HTTP_SECS HTTP_THREADS HTTP_CONNS
EOF
}
while (($#)); do
  case $1 in
    --only) WORKLOADS=$2; shift ;;
    --monitors) MONITORS=$2; shift ;;
    --reps) REPS=$2; shift ;;
    --quick) REPS=2 EXEC_N=200 OPEN_N=40000 CONNECT_N=2000 HTTP_SECS=2 ;;
    --exec-n) EXEC_N=$2; shift ;;
    --open-n) OPEN_N=$2; shift ;;
    --connect-n) CONNECT_N=$2; shift ;;
    --http-secs) HTTP_SECS=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
[[ ,$MONITORS, == *,none,* ]] || MONITORS=none,$MONITORS
for m in ${MONITORS//,/ }; do [[ ,$ALL_MONITORS, == *,$m,* ]] || { echo "unknown monitor: $m" >&2; exit 2; }; done
for w in ${WORKLOADS//,/ }; do [[ ,exec,open,connect,http, == *,$w,* ]] || { echo "unknown workload: $w" >&2; exit 2; }; done

log() { printf '%s\n' "$*" >&2; }
# Print a command (so the results can be reproduced by hand) and keep a copy.
# Commands reach the terminal during rep 1 only (later reps repeat them with other ports).
SHOW=1
show() { printf '+ %s\n' "$*" >>"$OUT/commands.txt"; ((SHOW)) && printf '+ %s\n' "$*" >&2; return 0; }
drop_monitor() {
  [[ ,$MONITORS, == *,$1,* ]] || return 0
  log "!! skipping monitor $1: $2"
  MONITORS=$(tr , '\n' <<<"$MONITORS" | grep -vx "$1" | paste -sd, - || true)
}

# ---------------------------------------------------------------- setup
ensure_deps() {
  local missing=()
  for c in nginx wrk auditd auditctl bpftrace gcc curl jq; do command -v "$c" >/dev/null || missing+=("$c"); done
  ((${#missing[@]})) || return 0
  log "installing packages (missing: ${missing[*]})"
  local pkgs=(nginx wrk auditd bpftrace gcc curl jq)
  apt-get install -y "${pkgs[@]}" >/dev/null || { apt-get update >/dev/null && apt-get install -y "${pkgs[@]}" >/dev/null; }
}

build_workloads() {
  mkdir -p "$BENCH/build"
  for p in exec_storm open_storm connect_storm; do
    gcc -O2 -Wall -pthread -o "$BENCH/build/$p" "$BENCH/workloads/$p.c"
  done
}

# A free 127.0.0.1 TCP port below the ephemeral range, so the connect storm can't take it.
free_port() {
  local p
  while :; do p=$((20000 + RANDOM % 10000)); [[ -z $(ss -Htln "sport = :$p") ]] && { echo "$p"; return; }; done
}

# Audit state. Once audit has been enabled on a boot, every process forked afterwards gets an
# audit context and runs syscalls through the slow path, even with auditing off again; that
# would tax every later baseline/nightjar/bpftrace run. So outside the auditd monitor a
# `-a never,task` rule keeps new processes context-free. We only touch audit if it has no
# rules of anyone else's, and restore enabled/backlog/rules on exit.
AUDIT_OWNED=0
audit_setup() {
  command -v auditctl >/dev/null || return 0
  [[ $(auditctl -l 2>&1) == "No rules" ]] || { drop_monitor auditd "audit rules already installed; not touching them"; return 0; }
  AUDIT_ENABLED0=$(auditctl -s | awk '$1=="enabled"{print $2}')
  AUDIT_BACKLOG0=$(auditctl -s | awk '$1=="backlog_limit"{print $2}')
  AUDIT_OWNED=1
  auditctl -a never,task >/dev/null
}
audit_restore() {
  ((AUDIT_OWNED)) || return 0
  auditctl -D >/dev/null; auditctl -e "$AUDIT_ENABLED0" >/dev/null; auditctl -b "$AUDIT_BACKLOG0" >/dev/null
}

# ---------------------------------------------------------------- monitors
# mon_start MONITOR starts it in $RUN and waits until it observes; mon_stop stops it and sets
# LOST. Events seen are counted afterwards by count_seen from what the monitor wrote.
MON_PID=""
wait_until() { # wait_until SECONDS CMD...: poll CMD every 0.1 s
  local end=$((SECONDS + $1)); shift
  until "$@"; do ((SECONDS < end)) || return 1; sleep 0.1; done
}
alive() { kill -0 "$MON_PID" 2>/dev/null; }
CLK_TCK=$(getconf CLK_TCK)
# utime + stime of the monitor process so far, in clock ticks ("" without a monitor).
mon_cpu_ticks() { [[ -n $MON_PID ]] && sed 's/.*) //' "/proc/$MON_PID/stat" 2>/dev/null | awk '{print $12 + $13}'; }
dead() { ! alive; }
metrics_up() { alive && curl -sf -m 1 -o /dev/null "http://127.0.0.1:$METRICS_PORT/metrics"; }
# bpftrace's -o file is block-buffered, so a READY printf would not show up: instead wait
# until it holds one perf_event fd per tracepoint (it opens and attaches them together).
bt_ready() { alive && (($(ls -l "/proc/$MON_PID/fd" 2>/dev/null | grep -c perf_event) >= BT_PROBES)); }
audit_drained() { auditctl -s | grep -qx "backlog 0"; }
auditd_ready() { alive && auditctl -s | grep -qx "pid $MON_PID"; }
floor_ready() { alive && grep -qx attached "$RUN/monitor.log"; }

mon_start() {
  local extra=()
  case $1 in
    none) return 0 ;;
    nightjar|nightjar-all-opens|nightjar-base|nightjar-probe-read|nightjar-normal-cpu)
      [[ $1 == nightjar-all-opens ]] && extra=(--file-prefix /)
      [[ $1 == nightjar-probe-read ]] && extra=(--probe-read)  # the build for kernels < 6.2
      [[ $1 == nightjar-normal-cpu ]] && extra=(--cpu-priority normal)
      METRICS_PORT=$(free_port)
      local bin=$NIGHTJAR_COPY; [[ $1 == nightjar-base ]] && bin=$NIGHTJAR_BASE_COPY
      local cmd=("$bin" agent --output json --output-file "$RUN/events.jsonl"
                 --metrics-addr "127.0.0.1:$METRICS_PORT" "${extra[@]}")
      show "$NIGHTJAR_BIN" "${cmd[@]:1}"; "${cmd[@]}" >"$RUN/monitor.log" 2>&1 & MON_PID=$!
      wait_until 60 metrics_up ;;
    bpftrace-noop|bpftrace-count|bpftrace-print)
      BT_PROBES=$(grep -o 'tracepoint:[a-z0-9_]*:[a-z0-9_]*' "$BENCH/monitors/$1.bt" | wc -l)
      show bpftrace -o "$RUN/bt.out" "$BENCH/monitors/$1.bt"
      bpftrace -o "$RUN/bt.out" "$BENCH/monitors/$1.bt" >"$RUN/monitor.log" 2>&1 & MON_PID=$!
      wait_until 60 bt_ready ;;
    hook-floor)
      show "$HOOK_FLOOR_BIN"; "$HOOK_FLOOR_COPY" >"$RUN/monitor.log" 2>&1 & MON_PID=$!
      wait_until 30 floor_ready ;;
    auditd)
      # Own subdir: auditd makes its log dir 0700, which would lock nginx (nobody) out of $RUN.
      mkdir -p "$RUN/audit/plugins"; sed "s|@DIR@|$RUN/audit|g" "$BENCH/monitors/auditd.conf.in" >"$RUN/audit/auditd.conf"
      chmod 600 "$RUN/audit/auditd.conf"; AUDIT_LOST0=""  # auditd refuses group/world-writable configs
      auditctl -D >/dev/null        # drop our never,task rule: this monitor must see the workload
      show auditd -n -c "$RUN/audit"; auditd -n -c "$RUN/audit" >"$RUN/monitor.log" 2>&1 & MON_PID=$!
      wait_until 30 auditd_ready || return 1
      show auditctl -R "$BENCH/monitors/audit.rules"; auditctl -R "$BENCH/monitors/audit.rules" >/dev/null
      AUDIT_LOST0=$(auditctl -s | awk '$1=="lost"{print $2}') ;;
  esac
}

mon_stop() {
  LOST=""
  [[ -n $MON_PID ]] || return 0
  case $1 in
    nightjar*) LOST=$(curl -sf -m 2 "http://127.0.0.1:$METRICS_PORT/metrics" |
                      awk '/^# TYPE nightjar_lost_events / {known = 1} /^nightjar_lost_events_total/ {s += $NF}
                           END {if (known) print s + 0}') || LOST="" ;;
    auditd) auditctl -D >/dev/null
            # Records still queued in the kernel are dropped if auditd exits: let it drain.
            wait_until 30 audit_drained
            [[ -n $AUDIT_LOST0 ]] && LOST=$(( $(auditctl -s | awk '$1=="lost"{print $2}') - AUDIT_LOST0 )) ;;
  esac
  local sig=INT; [[ $1 == auditd ]] && sig=TERM   # auditd shuts down on TERM, the rest on ^C
  kill -"$sig" "$MON_PID" 2>/dev/null || true
  wait_until 30 dead || kill -KILL "$MON_PID" 2>/dev/null || true
  wait "$MON_PID" 2>/dev/null || true
  MON_PID=""
  if [[ $1 == auditd ]]; then auditctl -e "$AUDIT_ENABLED0" >/dev/null; auditctl -a never,task >/dev/null; fi
  if [[ $1 == bpftrace-print ]]; then
    LOST=$(cat "$RUN/bt.out" "$RUN/monitor.log" | awk '/^Lost [0-9]+ events/ {s += $2} END {print s + 0}')
  fi
}

# Events this run's workload produced that the monitor recorded ("" = not checked). The
# filters pin the workload: its pid/ppid, the bench file's unique path, the listener's port.
count_seen() { # count_seen MONITOR WORKLOAD
  local f="$RUN/events.jsonl" bt="$RUN/bt.out" port=${PORT:-x}
  case $1:$2 in
    nightjar:exec|nightjar-all-opens:exec|nightjar-probe-read:exec|nightjar-base:exec|nightjar-normal-cpu:exec)
      grep -F '"type":"process_exec"' "$f" | grep -F "\"ppid\":$WL_PID," | grep -cE '"binary":"(/usr)?/bin/true"' ;;
    nightjar-all-opens:open)
      grep -F '"type":"file_open"' "$f" | grep -cF "\"path\":\"$BENCH_FILE\"" ;;
    nightjar:connect|nightjar-all-opens:connect|nightjar-probe-read:connect|nightjar-base:connect|nightjar-normal-cpu:connect)
      grep -F '"type":"sock_connect"' "$f" | grep -cE "\"port\":$port[,}]" ;;
    bpftrace-print:exec) awk -v p="$WL_PID" '$1=="exec" && $3==p && $4 ~ /bin\/true$/' "$bt" | wc -l ;;
    bpftrace-print:open) awk -v f="$BENCH_FILE" '$1=="open" && $3==f' "$bt" | wc -l ;;
    bpftrace-print:connect) awk -v a="127.0.0.1:$port" '$1=="connect" && $3==a' "$bt" | wc -l ;;
    auditd:exec) cat "$RUN"/audit/audit.log* | grep -F 'key="nightjar-bench"' | grep -cE "syscall=59 .* ppid=$WL_PID " ;;
    auditd:open) cat "$RUN"/audit/audit.log* | grep -F 'type=PATH' | grep -cF "name=\"$BENCH_FILE\"" ;;
    auditd:connect) cat "$RUN"/audit/audit.log* | grep -F 'key="nightjar-bench"' | grep -cE "syscall=42 .* pid=$WL_PID " ;;
    *) echo "" ;;
  esac
}

# ---------------------------------------------------------------- workloads
# Each sets VALUE (seconds, or requests/s for http), EXPECTED and WL_PID; returns !0 on failure.
NGINX_PID=""
start_nginx() {
  local dir="$RUN/nginx"; HTTP_PORT=$(free_port)
  mkdir -p "$dir/www"; head -c 612 /dev/zero | tr '\0' x >"$dir/www/index.html"
  sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$HTTP_PORT|g" "$BENCH/workloads/nginx.conf.in" >"$dir/nginx.conf"
  show nginx -p "$dir" -c "$dir/nginx.conf" -g "'daemon off;'"
  nginx -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' >"$dir/stdout" 2>&1 & NGINX_PID=$!
  wait_until 10 curl -sf -m 1 -o /dev/null "http://127.0.0.1:$HTTP_PORT/"
}
stop_nginx() {
  [[ -n $NGINX_PID ]] || return 0
  kill -QUIT "$NGINX_PID" 2>/dev/null || true; wait "$NGINX_PID" 2>/dev/null || true; NGINX_PID=""
}

run_workload() { # run_workload WORKLOAD
  local out="$RUN/workload.out" cmd; PORT=""; EXPECTED=""; WL_CPU=""
  case $1 in
    exec) EXPECTED=$EXEC_N; cmd=("$BENCH/build/exec_storm" "$EXEC_N") ;;
    open) EXPECTED=$OPEN_N; cmd=("$BENCH/build/open_storm" "$OPEN_N" "$BENCH_FILE") ;;
    connect) EXPECTED=$CONNECT_N; cmd=("$BENCH/build/connect_storm" "$CONNECT_N") ;;
    http)
      # Started after the monitor: audit only sees processes forked once it is enabled.
      start_nginx || { stop_nginx; return 1; }
      cmd=(wrk -t"$HTTP_THREADS" -c"$HTTP_CONNS" -d"${HTTP_SECS}s" "http://127.0.0.1:$HTTP_PORT/") ;;
  esac
  show "${cmd[@]}"; "${cmd[@]}" >"$out" & WL_PID=$!
  local rc=0; wait "$WL_PID" || rc=$?
  stop_nginx
  ((rc == 0)) || { log "!! $1 failed (rc $rc): $(tail -2 "$out")"; return 1; }
  if [[ $1 == http ]]; then
    grep -q 'Socket errors\|Non-2xx' "$out" && log "!! wrk reported errors: $(grep 'Socket errors\|Non-2xx' "$out")"
    VALUE=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  else
    VALUE=$(sed -n 's/^elapsed=//p' "$out"); PORT=$(sed -n 's/^port=//p' "$out")
    WL_CPU=$(sed -n 's/^cpu=//p' "$out")
  fi
  [[ -n $VALUE ]]
}

# One measurement: start monitor, run workload, stop monitor, record a TSV row.
run_one() { # run_one REP WORKLOAD MONITOR
  local rep=$1 wl=$2 mon=$3 unit=s seen="" lost="" t0=$SECONDS
  [[ $wl == http ]] && unit=rps
  RUN="$TMP/run"; rm -rf "$RUN"; mkdir -p "$RUN"; VALUE=""
  if ! mon_start "$mon"; then
    log "!! $mon did not become ready: $(tail -3 "$RUN/monitor.log" 2>/dev/null)"
    mon_stop "$mon"; drop_monitor "$mon" "failed to start"; return 0
  fi
  sleep 0.5  # same settle time for every monitor, none included
  local cpu0; cpu0=$(mon_cpu_ticks || true)
  run_workload "$wl" || VALUE=""
  # The monitor process's own CPU while the workload ran (kernel-side hook work is charged to
  # the workload, and auditd's kernel queue to kauditd): less sensitive to this machine's
  # scheduling noise than wall time.
  local cpu=""; [[ -n $cpu0 ]] && cpu=$(awk -v a="$cpu0" -v b="$(mon_cpu_ticks)" -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / hz}')
  mon_stop "$mon"; lost=$LOST
  [[ -n $VALUE ]] && seen=$(count_seen "$mon" "$wl" || true)
  [[ -n $seen ]] || EXPECTED=""
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$wl" "$mon" "$rep" "$VALUE" "$unit" "$seen" "$EXPECTED" "$lost" "$cpu" "$WL_CPU" >>"$OUT/runs.tsv"
  log "$(printf 'rep %s  %-8s %-19s %10s %-3s seen %s/%s lost %s (%ss)' "$rep" "$wl" "$mon" "${VALUE:-FAILED}" "$unit" "${seen:--}" "${EXPECTED:--}" "${lost:--}" $((SECONDS - t0)))"
}

applies() { [[ $2 != nightjar-all-opens || $1 == open ]]; }  # all-opens only differs on open

# ---------------------------------------------------------------- summary
# runs.tsv -> results.json (runs + per workload/monitor stats) and a markdown table.
summarize() {
  local order; order=$(jq -Rc 'split(",")' <<<"$ALL_MONITORS")
  jq -R -s --argjson order "$order" --argjson meta "$META" '
    def num: if . == "" then null else tonumber end;
    def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor]
                       else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    def total(f): map(f) | if any(. == null) then null else add end;
    [split("\n")[] | select(length > 0) | split("\t")
     | {workload: .[0], monitor: .[1], rep: (.[2] | tonumber), value: (.[3] | num), unit: .[4],
        events_seen: (.[5] | num), events_expected: (.[6] | num), lost_events: (.[7] | num),
        monitor_cpu_s: ((.[8] // "") | num), workload_cpu_s: ((.[9] // "") | num)}] as $runs
    | {meta: $meta, runs: $runs, summary: (
        [$runs | group_by(.workload)[] | map(select(.value != null)) as $ok
        | ($ok | map(select(.monitor == "none") | .value) | median) as $base
        | ($ok | map(select(.monitor == "none") | .workload_cpu_s | select(. != null)) | median) as $cpu_base
        | ($ok | map(select(.monitor == "none") | {key: (.rep | tostring), value: .value}) | from_entries) as $none_by_rep
        | $ok | group_by(.monitor)[]
        | (map(if $base == null then null elif .unit == "rps" then $base / .value else .value / $base end)) as $r
        | (map($none_by_rep[.rep | tostring] as $n
               | if $n == null then empty elif .unit == "rps" then $n / .value else .value / $n end)) as $paired
        | {workload: .[0].workload, monitor: .[0].monitor, unit: .[0].unit, reps: length,
           baseline_median: $base, median: (map(.value) | median),
           ratio_median: (if $base then $r | median else null end),
           ratio_min: (if $base then $r | min else null end), ratio_max: (if $base then $r | max else null end),
           paired_ratio_median: ($paired | median),
           events_seen: total(.events_seen), events_expected: total(.events_expected),
           lost_events: total(.lost_events),
           monitor_cpu_s_median: (map(.monitor_cpu_s | select(. != null)) | median),
           workload_cpu_ratio_median: (if $cpu_base then map(.workload_cpu_s | select(. != null) | . / $cpu_base) | median else null end)}]
        | sort_by((.workload as $w | ["exec", "open", "connect", "http"] | index($w)), (.monitor as $m | $order | index($m))))}
  ' "$OUT/runs.tsv" >"$OUT/results.json"
  {
    echo "| workload | monitor | ratio (median) | min-max | paired ratio (median) | median value | workload CPU ratio (median) | events seen/expected | lost | monitor CPU (median) |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    jq -r '.summary[] | def f: if . == null then "-" else (. * 100 | round) as $c
        | "\($c / 100 | floor).\($c % 100 | tostring | if length < 2 then "0" + . else . end)" end;
      "| \(.workload) | \(.monitor) | \(.ratio_median | f) | \(.ratio_min | f)-\(.ratio_max | f) | \(.paired_ratio_median | f) | "
      + "\(if .unit == "rps" then .median | round else .median | f end) \(.unit) | \(.workload_cpu_ratio_median | f) | \(if .events_expected then "\(.events_seen)/\(.events_expected)" else "-" end) | \(.lost_events // "-") | \(if .monitor_cpu_s_median then "\(.monitor_cpu_s_median) s" else "-" end) |"' \
      "$OUT/results.json"
  } >"$OUT/table.md"
  { echo "# Nightjar overhead benchmark $(basename "$OUT")"; echo
    echo 'Ratio = monitored wall time / baseline (http: baseline rps / monitored rps); >1 is slower. Ratio and min-max take the baseline as the median of all no-monitor reps; paired ratio divides each rep by the no-monitor run of the same rep, which cancels drift over a run. Workload CPU ratio = the workload loop'"'"'s own CPU (user + system, where in-context hook work is charged) / baseline.'
    echo; jq -r '.meta | to_entries[] | "- \(.key): \(.value)"' "$OUT/results.json"; echo
    cat "$OUT/table.md"; } >"$OUT/results.md"
}

# ---------------------------------------------------------------- main
cleanup() {
  set +e
  [[ -n $MON_PID ]] && { kill -INT "$MON_PID"; kill -TERM "$MON_PID"; wait_until 5 dead || kill -KILL "$MON_PID"; wait "$MON_PID"; } 2>/dev/null
  stop_nginx
  audit_restore
  [[ -n ${TMP:-} ]] && rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ $EUID == 0 ]] || { echo "run as root (monitors load BPF programs / audit rules)" >&2; exit 1; }
OUT="$BENCH/results/$(date +%Y%m%d-%H%M%S)"; mkdir -p "$OUT"
TMP=$(mktemp -d /tmp/nightjar-bench.XXXXXX); chmod 755 "$TMP"  # nginx workers run as nobody
BENCH_FILE="$TMP/bench-file"; echo data >"$BENCH_FILE"
ensure_deps
build_workloads
if [[ ,$MONITORS, == *,nightjar* && ! -x $NIGHTJAR_BIN ]]; then
  for m in nightjar nightjar-all-opens nightjar-probe-read nightjar-normal-cpu; do drop_monitor "$m" "$NIGHTJAR_BIN not found (cargo build --release)"; done
fi
# Run a private copy: a cargo build replacing the binary mid-benchmark must not mix versions.
NIGHTJAR_COPY="$TMP/nightjar"; [[ ,$MONITORS, == *,nightjar* ]] && cp "$NIGHTJAR_BIN" "$NIGHTJAR_COPY"
NIGHTJAR_BASE_COPY="$TMP/nightjar-base"
HOOK_FLOOR_COPY="$TMP/nj-hook-floor"
if [[ ,$MONITORS, == *,hook-floor,* ]]; then
  if [[ -x $HOOK_FLOOR_BIN ]]; then cp "$HOOK_FLOOR_BIN" "$HOOK_FLOOR_COPY"
  else drop_monitor hook-floor "$HOOK_FLOOR_BIN not found (cargo build --release)"; fi
fi
if [[ ,$MONITORS, == *,nightjar-base,* ]]; then
  if [[ -x ${NIGHTJAR_BASE_BIN:-} ]]; then cp "$NIGHTJAR_BASE_BIN" "$NIGHTJAR_BASE_COPY"
  else drop_monitor nightjar-base "set NIGHTJAR_BASE_BIN to another build to compare with"; fi
fi
audit_setup

META=$(jq -n --arg date "$(date -Is)" --arg kernel "$(uname -r)" --arg cpus "$(nproc)" \
  --arg reps "$REPS" --arg sizes "exec=$EXEC_N open=$OPEN_N connect=$CONNECT_N http=${HTTP_SECS}s/t$HTTP_THREADS/c$HTTP_CONNS" \
  --arg monitors "$MONITORS" --arg workloads "$WORKLOADS" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
  --arg nightjar "$NIGHTJAR_BIN $( [[ -x $NIGHTJAR_COPY ]] && sha256sum "$NIGHTJAR_COPY" | cut -c1-12)" \
  '$ARGS.named')
log "== $REPS reps; workloads $WORKLOADS; monitors $MONITORS; results in $OUT"
for ((rep = 1; rep <= REPS; rep++)); do
  ((rep == 1)) || SHOW=0
  for wl in ${WORKLOADS//,/ }; do
    # Rotate the monitor order every rep, so no monitor always runs right after another.
    mons=(); for m in ${MONITORS//,/ }; do applies "$wl" "$m" && mons+=("$m"); done
    for ((i = 0; i < ${#mons[@]}; i++)); do
      run_one "$rep" "$wl" "${mons[(i + rep - 1) % ${#mons[@]}]}"
    done
  done
done
META=$(jq --arg load_end "$(cut -d' ' -f1-3 /proc/loadavg)" '. + {load_end: $load_end}' <<<"$META")
summarize
echo; cat "$OUT/table.md"; echo; echo "results: $OUT/results.json, $OUT/results.md"
