#!/usr/bin/env bash
# Network overhead of TC flow accounting: iperf3 over two identical veth pairs between
# namespaces this script creates (10.215.1.0/24 and 10.215.2.0/24 exist only inside them). The
# agent's TC programs are on pair 1's sending veth only; runs alternate between the pairs, so
# each monitored run has an unmonitored neighbour seconds apart and the host's drift cancels
# out of each pair's ratio. Prints the median of the per-pair ratios with quartiles.
# usage: bash bench/net.sh [PAIRS] [SECONDS]   (root; installs iperf3 if missing)
set -euo pipefail
PAIRS=${1:-21}
SECS=${2:-1}
BIN=${NIGHTJAR_BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/nightjar}
command -v iperf3 >/dev/null || apt-get install -y iperf3 >/dev/null
TAG=$$
ns_a() { echo "njb-a$1-$TAG"; }
ns_b() { echo "njb-b$1-$TAG"; }
cleanup() {
  [[ -n ${AG:-} ]] && kill -INT "$AG" 2>/dev/null
  wait 2>/dev/null
  pkill -f "iperf3 -s -D -B 10.215.[12].2" 2>/dev/null || true
  for i in 1 2; do ip netns del "$(ns_a $i)" 2>/dev/null; ip netns del "$(ns_b $i)" 2>/dev/null; done
}
trap cleanup EXIT
for i in 1 2; do
  A=$(ns_a $i) B=$(ns_b $i) VA=njba$i-$TAG VB=njbb$i-$TAG
  ip netns add "$A"; ip netns add "$B"
  ip link add "${VA:0:15}" netns "$A" type veth peer name "${VB:0:15}" netns "$B"
  ip -n "$A" addr add "10.215.$i.1/24" dev "${VA:0:15}"; ip -n "$B" addr add "10.215.$i.2/24" dev "${VB:0:15}"
  for ns in "$A" "$B"; do ip -n "$ns" link set lo up; done
  ip -n "$A" link set "${VA:0:15}" up; ip -n "$B" link set "${VB:0:15}" up
  ip netns exec "$B" iperf3 -s -D -B "10.215.$i.2" >/dev/null
done
MONITORED=njba1-$TAG; MONITORED=${MONITORED:0:15}
sleep 0.5
tcp() { ip netns exec "$(ns_a "$1")" iperf3 -c "10.215.$1.2" -t "$SECS" -J | jq '.end.sum_received.bits_per_second'; }
pps() { ip netns exec "$(ns_a "$1")" iperf3 -c "10.215.$1.2" -u -l 64 -b 0 -t "$SECS" -J | jq '.end.sum.packets / .end.sum.seconds'; }

nsenter --net=/var/run/netns/"$(ns_a 1)" -- "$BIN" agent --output none --no-metrics --groups process \
  --tc-interface "$MONITORED" 2>/tmp/njb-agent.log & AG=$!
for _ in $(seq 100); do grep -q "agent ready" /tmp/njb-agent.log && break; sleep 0.1; done
grep -q "agent ready" /tmp/njb-agent.log || { cat /tmp/njb-agent.log >&2; exit 1; }

# The agent's CPU (user + system) over the whole alternation, as % of one core.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$AG/stat"; }
c0=$(cpu_ticks); w0=$(date +%s.%N)
declare -a TR PR T0 T1 P0 P1
for r in $(seq "$PAIRS"); do
  # Alternate which pair goes first, so neither always runs on a warmer machine.
  if ((r % 2)); then t1=$(tcp 1); t0=$(tcp 2); p1=$(pps 1); p0=$(pps 2)
  else t0=$(tcp 2); t1=$(tcp 1); p0=$(pps 2); p1=$(pps 1); fi
  T0+=("$t0"); T1+=("$t1"); P0+=("$p0"); P1+=("$p1")
  TR+=("$(awk -v a="$t1" -v b="$t0" 'BEGIN{printf "%.4f", a/b}')")
  PR+=("$(awk -v a="$p1" -v b="$p0" 'BEGIN{printf "%.4f", a/b}')")
done
c1=$(cpu_ticks); w1=$(date +%s.%N)

# quartiles VALUES...: "median (q1-q3)"
quartiles() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{printf "%s (%s-%s)", a[int((NR+1)/2)], a[int((NR+3)/4)], a[int((3*NR+1)/4)]}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
echo "pairs: $PAIRS x ${SECS}s; agent TC programs on $MONITORED (pair 1), pair 2 unmonitored"
echo "tcp throughput: unmonitored $(awk -v v="$(median "${T0[@]}")" 'BEGIN{printf "%.2f", v/1e9}') Gbit/s, monitored $(awk -v v="$(median "${T1[@]}")" 'BEGIN{printf "%.2f", v/1e9}') Gbit/s; per-pair ratio $(quartiles "${TR[@]}")"
echo "udp 64-byte pps: unmonitored $(printf '%.0f' "$(median "${P0[@]}")"), monitored $(printf '%.0f' "$(median "${P1[@]}")"); per-pair ratio $(quartiles "${PR[@]}")"
# Then the programs' own time per packet (bpf_stats; the stats add about 50 ns per run).
STATS0=$(sysctl -n kernel.bpf_stats_enabled); sysctl -qw kernel.bpf_stats_enabled=1
pps 1 >/dev/null
PROG=$(bpftool -j prog show | jq -r '[.[] | select(.name == "nj_tc_egress" and (.run_cnt // 0) > 0)] | max_by(.run_cnt) | "\(.run_time_ns / .run_cnt | floor) ns per packet over \(.run_cnt) packets"')
sysctl -qw kernel.bpf_stats_enabled="$STATS0"
echo "nj_tc_egress under bpf_stats: $PROG"
echo "agent CPU over the runs: $(awk -v c="$((c1 - c0))" -v hz="$(getconf CLK_TCK)" -v a="$w0" -v b="$w1" 'BEGIN{printf "%.1f", 100 * c / hz / (b - a)}')% of one core"
