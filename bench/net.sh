#!/usr/bin/env bash
# Network overhead of TC flow accounting: iperf3 over a veth pair between two namespaces this
# script creates (10.215.0.0/24 exists only inside them), without and with the agent's TC
# programs on the sending side's veth. Interleaved reps; prints the median ratios.
# usage: bash bench/net.sh [REPS]   (root; installs iperf3 if missing)
set -euo pipefail
REPS=${1:-5}
BIN=${NIGHTJAR_BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/nightjar}
command -v iperf3 >/dev/null || apt-get install -y iperf3 >/dev/null
A=njb-a-$$ B=njb-b-$$ VA=njba$$ VB=njbb$$
cleanup() { [[ -n ${AG:-} ]] && kill -INT "$AG" 2>/dev/null; wait 2>/dev/null; ip netns del "$A" 2>/dev/null; ip netns del "$B" 2>/dev/null; }
trap cleanup EXIT
ip netns add "$A"; ip netns add "$B"
ip link add "$VA" netns "$A" type veth peer name "$VB" netns "$B"
ip -n "$A" addr add 10.215.0.1/24 dev "$VA"; ip -n "$B" addr add 10.215.0.2/24 dev "$VB"
for ns in "$A" "$B"; do ip -n "$ns" link set lo up; done
ip -n "$A" link set "$VA" up; ip -n "$B" link set "$VB" up
ip netns exec "$B" iperf3 -s -D -B 10.215.0.2 >/dev/null
sleep 0.5
tcp() { ip netns exec "$A" iperf3 -c 10.215.0.2 -t 3 -J | jq '.end.sum_received.bits_per_second'; }
pps() { ip netns exec "$A" iperf3 -c 10.215.0.2 -u -l 64 -b 0 -t 3 -J | jq '.end.sum.packets / .end.sum.seconds'; }
agent_on() {
  nsenter --net=/var/run/netns/"$A" -- "$BIN" agent --output none --no-metrics --groups process \
    --tc-interface "$VA" 2>/tmp/njb-agent.log & AG=$!
  for _ in $(seq 100); do grep -q "agent ready" /tmp/njb-agent.log && break; sleep 0.1; done
}
agent_off() { kill -INT "$AG"; wait "$AG" || true; AG=; }
# The agent's CPU (user + system) over its TCP and small-packet runs, as % of one core.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$AG/stat"; }
declare -a T0 T1 P0 P1 C1
for r in $(seq "$REPS"); do
  T0+=("$(tcp)"); P0+=("$(pps)")
  agent_on
  c0=$(cpu_ticks); w0=$(date +%s.%N)
  T1+=("$(tcp)"); P1+=("$(pps)")
  c1=$(cpu_ticks); w1=$(date +%s.%N)
  C1+=("$(awk -v c="$((c1 - c0))" -v hz="$(getconf CLK_TCK)" -v a="$w0" -v b="$w1" 'BEGIN{printf "%.1f", 100 * c / hz / (b - a)}')")
  agent_off
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
t0=$(median "${T0[@]}"); t1=$(median "${T1[@]}"); p0=$(median "${P0[@]}"); p1=$(median "${P1[@]}")
echo "tcp throughput: none $(awk -v v="$t0" 'BEGIN{printf "%.2f", v/1e9}') Gbit/s, agent $(awk -v v="$t1" 'BEGIN{printf "%.2f", v/1e9}') Gbit/s, ratio $(awk -v a="$t1" -v b="$t0" 'BEGIN{printf "%.3f", a/b}')"
echo "agent CPU during its runs: median $(median "${C1[@]}")% of one core (runs: ${C1[*]})"
echo "udp 64-byte pps: none $(printf '%.0f' "$p0"), agent $(printf '%.0f' "$p1"), ratio $(awk -v a="$p1" -v b="$p0" 'BEGIN{printf "%.3f", a/b}')"
pkill -f "iperf3 -s -D -B 10.215.0.2" || true
