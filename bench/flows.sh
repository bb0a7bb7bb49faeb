#!/usr/bin/env bash
# TC flow accounting checked against conntrack and nftables, and the flow table's cost.
#
# 1. Agreement: the agent's TC programs, conntrack (nf_conntrack_acct=1) and per-flow nftables
#    counters (dynamic sets with a counter per element, on prerouting and postrouting) all in
#    namespace A watch the same known mix sent to a server in namespace B: iperf3 (GSO),
#    short bulk TCP connections, a chatty TCP connection, UDP echo and ping. Per 5-tuple and
#    direction the three must agree on packets and, once the agent's 14-byte Ethernet header
#    per packet is taken off, on bytes.
# 2. Cost: the agent with --flow-table-size 131072 and 100,000 live UDP flows: the kernel map's
#    memory, live entries, the agent's RSS and CPU time while it polls them.
#
# Everything runs in namespaces and a veth pair this script creates and removes; 10.216.0.0/24
# exists only inside them.
# usage: bash bench/flows.sh   (root; installs conntrack, nftables, iperf3, jq, curl, bpftool)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${NIGHTJAR_BIN:-$ROOT/target/release/nightjar}
TRIGGER=${NJ_TRIGGER_BIN:-$(dirname "$BIN")/nj-trigger}
# Build if missing or older than --flow-table-size.
if [[ ! -x $BIN || ! -x $TRIGGER || $("$BIN" agent --help 2>/dev/null) != *--flow-table-size* ]]; then
  (cd "$ROOT" && cargo build --release -p nightjar)
fi
need() { command -v "$1" >/dev/null || apt-get install -y "$2" >/dev/null; }
need conntrack conntrack; need nft nftables; need iperf3 iperf3; need jq jq; need curl curl
need bpftool bpftool; need ss iproute2; need ping iputils-ping; need nsenter util-linux
[[ -x /usr/bin/python3 ]] || apt-get install -y python3 >/dev/null
PY=/usr/bin/python3
ETH=14 # Ethernet header: in skb->len at TC, not in the L3 length conntrack and nftables count

A=njf-a-$$ B=njf-b-$$ VA=njfa$$ VB=njfb$$ IPA=10.216.0.1 IPB=10.216.0.2
W=$(mktemp -d /tmp/njf.XXXXXX)
NSS=() PIDS=() AG=
cleanup() {
  set +e
  if [[ -n $AG ]]; then
    kill -INT "$AG" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$AG" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$AG" 2>/dev/null
  fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  for ns in "${NSS[@]}"; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "$W"
}
trap cleanup EXIT

# Two namespaces joined by a veth pair, IPv6 off (no neighbour discovery flows), static
# neighbours (no ARP, and no packet waits in an unresolved neighbour queue).
mkpair() {
  ip netns add "$A"; NSS+=("$A"); ip netns add "$B"; NSS+=("$B")
  for ns in "$A" "$B"; do
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$ns" link set lo up
  done
  ip link add "$VA" netns "$A" type veth peer name "$VB" netns "$B"
  ip -n "$A" addr add $IPA/24 dev "$VA"; ip -n "$B" addr add $IPB/24 dev "$VB"
  ip -n "$A" link set "$VA" up; ip -n "$B" link set "$VB" up
  ip -n "$A" neigh replace $IPB lladdr "$(ip -n "$B" -j link show "$VB" | jq -r '.[0].address')" dev "$VA" nud permanent
  ip -n "$B" neigh replace $IPA lladdr "$(ip -n "$A" -j link show "$VA" | jq -r '.[0].address')" dev "$VB" nud permanent
}
delpair() { ip netns del "$A"; ip netns del "$B"; NSS=(); }

agent_start() { # LOG OUTPUT [agent args...]
  local log=$1 out=$2; shift 2
  nsenter --net=/var/run/netns/"$A" -- "$BIN" agent --output json --output-file "$out" --type flow \
    --groups process --no-control-socket --tc-interface "$VA" "$@" 2>"$log" & AG=$!
  for _ in $(seq 300); do
    grep -q "agent ready" "$log" && return 0
    kill -0 "$AG" 2>/dev/null || break
    sleep 0.1
  done
  echo "agent did not start:" >&2; cat "$log" >&2; exit 1
}
agent_stop() { kill -INT "$AG"; wait "$AG" || true; AG=; }
wait_port() { # NS PROTO(t|u) PORT
  for _ in $(seq 50); do
    [[ -n $(ip netns exec "$1" ss -Hln"$2" "sport = :$3") ]] && return 0; sleep 0.1
  done
  echo "nothing listens on $3 in $1" >&2; exit 1
}

cat >"$W/server.py" <<'EOF'
# In B: 7000 reads to EOF then answers "ok N"; 7001 echoes (TCP); 7002 echoes (UDP).
import socket, threading, time
HOST = "10.216.0.2"
def bulk(c):
    n = 0
    while True:
        d = c.recv(65536)
        if not d: break
        n += len(d)
    c.sendall(b"ok %d\n" % n); c.close()
def echo(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        d = c.recv(65536)
        if not d: break
        c.sendall(d)
    c.close()
def tcp(port, handler):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((HOST, port)); s.listen(16)
    while True:
        c, _ = s.accept(); threading.Thread(target=handler, args=(c,), daemon=True).start()
def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((HOST, port))
    while True:
        d, a = s.recvfrom(65536); s.sendto(d, a)
for t in [(tcp, 7000, bulk), (tcp, 7001, echo), (udp, 7002)]:
    threading.Thread(target=t[0], args=t[1:], daemon=True).start()
while True: time.sleep(3600)
EOF
cat >"$W/client.py" <<'EOF'
# In A: bulk N | chat COUNT SIZE | udp COUNT SIZE; prints what came back.
import socket, sys
HOST = "10.216.0.2"
mode = sys.argv[1]
if mode == "bulk":
    s = socket.create_connection((HOST, 7000)); s.sendall(b"x" * int(sys.argv[2]))
    s.shutdown(socket.SHUT_WR); r = b""
    while True:
        d = s.recv(4096)
        if not d: break
        r += d
    s.close(); print(r.decode().strip())
elif mode == "chat":
    count, size = int(sys.argv[2]), int(sys.argv[3])
    s = socket.create_connection((HOST, 7001)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for _ in range(count):
        s.sendall(b"y" * size); got = 0
        while got < size: got += len(s.recv(size - got))
    s.close(); print(f"{count} round trips")
else:
    count, size = int(sys.argv[2]), int(sys.argv[3])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1); back = 0
    for _ in range(count):
        s.sendto(b"z" * size, (HOST, 7002))
        try: s.recv(65536); back += 1
        except socket.timeout: pass
    print(f"{count} sent, {back} echoed")
EOF

###########################################################################################
echo "== 1. per-flow agreement: agent (TC) vs conntrack vs nftables, namespace A"
mkpair
ip netns exec "$A" sysctl -qw net.netfilter.nf_conntrack_acct=1
# Per-flow counters: an element per 5-tuple (ICMP: type and echo id) with its own counter, one
# set per hook. The ct rule makes conntrack track this namespace's traffic. (nft limits the ICMP
# sets to echo request/reply, the types with an id; the mix has no other ICMP.)
ip netns exec "$A" nft -f - <<'EOF'
table ip njf {
  set tx { typeof ip saddr . ip daddr . meta l4proto . th sport . th dport; flags dynamic; size 65535; }
  set rx { typeof ip saddr . ip daddr . meta l4proto . th sport . th dport; flags dynamic; size 65535; }
  set itx { typeof ip saddr . ip daddr . icmp type . icmp id; flags dynamic; size 65535; }
  set irx { typeof ip saddr . ip daddr . icmp type . icmp id; flags dynamic; size 65535; }
  chain pre { type filter hook prerouting priority 0; policy accept;
    ct state new,established,related counter
    meta l4proto { tcp, udp } update @rx { ip saddr . ip daddr . meta l4proto . th sport . th dport counter }
    meta l4proto icmp update @irx { ip saddr . ip daddr . icmp type . icmp id counter }
  }
  chain post { type filter hook postrouting priority 0; policy accept;
    ct state new,established,related counter
    meta l4proto { tcp, udp } update @tx { ip saddr . ip daddr . meta l4proto . th sport . th dport counter }
    meta l4proto icmp update @itx { ip saddr . ip daddr . icmp type . icmp id counter }
  }
}
EOF
ip netns exec "$B" iperf3 -s -B $IPB >/dev/null 2>&1 & PIDS+=($!)
ip netns exec "$B" $PY "$W/server.py" & PIDS+=($!)
wait_port "$B" t 5201; wait_port "$B" t 7000; wait_port "$B" t 7001; wait_port "$B" u 7002
agent_start "$W/agent1.log" "$W/flows1.json" --no-metrics

UDP_N=100 UDP_SIZE=200 PING_N=10 CHAT_N=50 CHAT_SIZE=100
ip netns exec "$A" ping -q -c $PING_N -i 0.2 $IPB >"$W/ping.txt" & PING=$!
ip netns exec "$A" iperf3 -c $IPB -t 2 -J >"$W/iperf.json"
echo "iperf3 -t 2: $(jq -r '.end.sum_sent.bytes' "$W/iperf.json") bytes sent"
for n in 1000 20000 300000; do echo "tcp bulk $n bytes: $(ip netns exec "$A" $PY "$W/client.py" bulk $n)"; done
echo "tcp chat: $(ip netns exec "$A" $PY "$W/client.py" chat $CHAT_N $CHAT_SIZE) of $CHAT_SIZE bytes"
echo "udp echo: $(ip netns exec "$A" $PY "$W/client.py" udp $UDP_N $UDP_SIZE) ($UDP_SIZE-byte datagrams)"
wait "$PING"; echo "ping: $(grep -o '[0-9]* received' "$W/ping.txt") of $PING_N"

# Counters as flows: "PROTO SADDR:SPORT>DADDR:DPORT PACKETS BYTES". ICMP as the agent keys it:
# port = type<<8|code at the source, the echo id at the destination.
ct_flows() {
  ip netns exec "$A" conntrack -L -o extended 2>/dev/null | awk '{
    delete f; side = 0
    for (i = 1; i <= NF; i++) if (split($i, kv, "=") == 2) { if (kv[1] == "src") side++; f[side, kv[1]] = kv[2] }
    for (s = 1; s <= 2; s++) {
      if ($3 == "icmp") { sp = f[s, "type"] * 256 + f[s, "code"]; dp = f[s, "id"] } else { sp = f[s, "sport"]; dp = f[s, "dport"] }
      print $3, f[s, "src"] ":" sp ">" f[s, "dst"] ":" dp, f[s, "packets"], f[s, "bytes"]
    }
  }' | grep ' 10\.216\.' | sort
}
nft_flows() {
  for s in tx rx; do
    ip netns exec "$A" nft -j list set ip njf $s | jq -r '.nftables[].set? // empty | .elem[]?.elem
      | .val.concat as $k | "\($k[2]) \($k[0]):\($k[3])>\($k[1]):\($k[4]) \(.counter.packets) \(.counter.bytes)"'
  done
  for s in itx irx; do
    ip netns exec "$A" nft -j list set ip njf $s | jq -r '.nftables[].set? // empty | .elem[]?.elem
      | .val.concat as $k | ({"echo-request": 2048, "echo-reply": 0}[$k[2]] // $k[2]) as $t
      | "icmp \($k[0]):\($t)>\($k[1]):\($k[3]) \(.counter.packets) \(.counter.bytes)"'
  done | sort
}
# Quiescence: both tables unchanged over a second (FIN/ACK exchanges done). At least 3 s, so
# closed TCP flows are reported through the agent's FIN path (reason end, after 1 s quiet).
sleep 2; ct_flows >"$W/ct.prev"; nft_flows >"$W/nft.prev"; QUIET=
for _ in $(seq 10); do
  sleep 1; ct_flows >"$W/ct.txt"; nft_flows >"$W/nft.txt"
  cmp -s "$W/ct.txt" "$W/ct.prev" && cmp -s "$W/nft.txt" "$W/nft.prev" && { QUIET=1; break; }
  cp "$W/ct.txt" "$W/ct.prev"; cp "$W/nft.txt" "$W/nft.prev"
done
[[ -n $QUIET ]] || echo "WARNING: counters still moving after 10 s; the comparison may be skewed"
agent_stop
# Agent: every record but periodic ones (those carry cumulative counters of a live flow) ends
# one kernel flow-table entry; a 5-tuple whose entry ended and came back has several.
jq -r 'select(.type == "flow" and .reason != "periodic")
  | "\(.protocol) \(.source.addr):\(.source.port)>\(.destination.addr):\(.destination.port) \(.packets) \(.bytes) \(.reason)"' \
  "$W/flows1.json" >"$W/agent.raw"
awk '{k = $1" "$2; p[k] += $3; b[k] += $4; r[k] = (n[k]++ ? r[k] "+" : "") $5} END {for (k in p) printf "%s %.0f %.0f %s\n", k, p[k], b[k], r[k]}' "$W/agent.raw" | sort >"$W/agent.txt"
echo "agent flow records: $(wc -l <"$W/agent.raw") ($(awk '{print $5}' "$W/agent.raw" | sort | uniq -c | awk '{printf "%s%s %s", s, $1, $2; s=", "}'))"
echo
echo "bytes: agent = skb->len at TC (frame with its $ETH-byte Ethernet header); conntrack and nftables"
echo "count the IP packet (L3 length). agent L3 = agent bytes - $ETH x packets is compared with them."
echo "GSO: one TCP skb of up to 64 KB is one packet to all three (segmentation, if any, comes later)."
awk -v eth=$ETH -v ipa=$IPA -v udpn=$UDP_N -v udpb=$((UDP_N * (28 + UDP_SIZE))) -v pingn=$PING_N -v pingb=$((PING_N * 84)) '
  FILENAME ~ /agent/ { ap[$1" "$2] = $3; ab[$1" "$2] = $4; ar[$1" "$2] = $5; keys[$1" "$2] = 1 }
  FILENAME ~ /ct/    { cp[$1" "$2] = $3; cb[$1" "$2] = $4; keys[$1" "$2] = 1 }
  FILENAME ~ /nft/   { np[$1" "$2] = $3; nb[$1" "$2] = $4; keys[$1" "$2] = 1 }
  function v(a, k) { return (k in a) ? a[k] : "-" }
  END {
    printf "%-7s %-5s %-4s %-38s %8s %8s %8s %10s %10s %10s %10s %10s  %s\n", "flow", "proto", "dir", "source > destination", \
      "pkts:ag", "ct", "nft", "bytes:ag", "ag-14/pkt", "ct", "nft", "expected", "agree (agent records)"
    for (k in keys) {
      split(k, kk, " "); proto = kk[1]; t = kk[2]
      dir = (index(t, ipa ":") == 1) ? "A>B" : "B>A"
      what = proto
      if (t ~ /:5201(>|$)/) what = "iperf3"; else if (t ~ /:7000(>|$)/) what = "bulk"
      else if (t ~ /:7001(>|$)/) what = "chat"; else if (t ~ /:7002(>|$)/) what = "udpecho"
      else if (proto == "icmp") what = "ping"
      ex = (what == "udpecho") ? udpn "/" udpb : (what == "ping") ? pingn "/" pingb : "-"
      aln = ab[k] - eth * ap[k]; al = (k in ap) ? sprintf("%.0f", aln) : "-"
      ok = ((k in ap) && (k in cp) && (k in np) && ap[k] == cp[k] && cp[k] == np[k] && al == cb[k] && cb[k] == nb[k]) ? "yes" : "NO"
      if (ok == "yes") agree++; else disagree++
      if (ok == "yes" && ex != "-" && ex != ap[k] "/" al) ok = "yes (not as expected)"
      lines[n++] = sprintf("%-7s %-5s %-4s %-38s %8s %8s %8s %10s %10s %10s %10s %10s  %s", what, proto, dir, t, \
        v(ap, k), v(cp, k), v(np, k), v(ab, k), al, v(cb, k), v(nb, k), ex, ok " (" v(ar, k) ")")
      if (what == "iperf3" || what == "bulk") { if (k in ap && ap[k] > 0) avg[what] = (avg[what] > aln / ap[k]) ? avg[what] : aln / ap[k] }
    }
    for (i = 0; i < n; i++) print lines[i] | "sort -k1,1 -k4,4"
    close("sort -k1,1 -k4,4")
    printf "directions that agree in packets and bytes: %d of %d\n", agree, agree + disagree
    for (w in avg) printf "largest mean L3 bytes/packet (%s): %.0f (MTU 1500: GSO skbs counted as one packet each)\n", w, avg[w]
  }' "$W/agent.txt" "$W/ct.txt" "$W/nft.txt"
# TCP's own segment counters in A (namespace-local /proc/net/snmp) against the packets the three
# tools counted: TCP counts segments of MSS size (a GSO skb as its gso_segs), TC, conntrack and
# nftables count skbs.
snmp() { ip netns exec "$A" cat /proc/net/snmp | awk -v f="$1" '$1 == "Tcp:" {if (!h) {for (i = 2; i <= NF; i++) c[$i] = i; h = 1} else print $c[f]}'; }
sum() { awk -v ipa=$IPA -v out="$2" '$1 == "tcp" && (index($2, ipa ":") == 1) == out {s += $3} END {printf "%.0f", s}' "$1"; }
echo "TCP in A, segments by TCP's own count (/proc/net/snmp) vs packets by agent/conntrack/nftables:"
echo "  out: OutSegs $(snmp OutSegs) (+ RetransSegs $(snmp RetransSegs)) vs $(sum "$W/agent.txt" 1) / $(sum "$W/ct.txt" 1) / $(sum "$W/nft.txt" 1)"
echo "  in:  InSegs $(snmp InSegs) vs $(sum "$W/agent.txt" 0) / $(sum "$W/ct.txt" 0) / $(sum "$W/nft.txt" 0)"
grep -q ' 0 0$' "$W/ct.txt" && echo "note: conntrack lists directions without packets (e.g. UNREPLIED)" || true
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=()
delpair

###########################################################################################
echo
echo "== 2. flow table with 100,000 live flows (--flow-table-size 131072, --flow-idle-timeout 60)"
mkpair
PORT=$((20000 + $$ % 20000)) SIZE=131072 SECS=10
metrics() { ip netns exec "$A" curl -s "http://127.0.0.1:$PORT/metrics"; }
metric() { metrics | awk -v m="$1" '$1 == m {print $2}'; }
rss_kb() { awk -v f="${1:-VmRSS}:" '$1 == f {print $2}' /proc/"$AG"/status; }
cpu_ticks() { sed 's/.*) //' /proc/"$AG"/stat | awk '{print $12, $13}'; } # utime stime
flow_map() { # bpftool's view of this agent's nj_flows (found through the agent's fds)
  local id
  for id in $(awk '/^map_id:/ {print $2}' /proc/"$AG"/fdinfo/* 2>/dev/null | sort -un); do
    bpftool -j map show id "$id" 2>/dev/null | jq -c 'select(.name == "nj_flows")'
  done
}
agent_start "$W/agent2.log" "$W/flows2.json" --metrics-addr 127.0.0.1:$PORT --flow-table-size $SIZE --flow-idle-timeout 60
HZ=$(getconf CLK_TCK)
sleep 2
MAP0=$(flow_map); RSS0=$(rss_kb); E0=$(metric nightjar_flow_table_entries)
read -r U0 S0 < <(cpu_ticks); sleep $SECS; read -r U1 S1 < <(cpu_ticks)
echo "nj_flows (bpftool -j map show): $MAP0"
T0=$(date +%s.%N)
# Nothing listens in B: its rate-limited ICMP port-unreachable replies are one more flow.
N1=$(ip netns exec "$A" "$TRIGGER" udp-ports $IPB 1 50000)
N2=$(ip netns exec "$A" "$TRIGGER" udp-ports $IPB 1 50000)
T1=$(date +%s.%N)
echo "sent $N1 + $N2 one-byte datagrams from two sockets to ports 1-50000 of $IPB in $(awk -v a="$T0" -v b="$T1" 'BEGIN {printf "%.2f", b - a}') s"
for _ in $(seq 100); do
  E1=$(metric nightjar_flow_table_entries); [[ ${E1:-0} -ge 100000 ]] && break; sleep 0.2
done
sleep 1 # let a poll with all of them finish before measuring
E1=$(metric nightjar_flow_table_entries)
MAP1=$(flow_map); RSS1=$(rss_kb)
read -r U2 S2 < <(cpu_ticks); sleep $SECS; read -r U3 S3 < <(cpu_ticks)
RSS2=$(rss_kb); E2=$(metric nightjar_flow_table_entries)
HWM=$(rss_kb VmHWM); CREATED=$(metric nightjar_flows_created_total); EVICTED=$(metric nightjar_flows_evicted_total)
T2=$(date +%s.%N)
agent_stop
T3=$(date +%s.%N)
RECS=$(jq -r 'select(.type == "flow") | "\(.protocol) \(.direction) \(.reason)"' "$W/flows2.json" | sort | uniq -c | awk '{printf "%s%s %s %s (%s)", s, $1, $2, $3, $4; s = ", "}')
MEMLOCK=$(jq -r '.bytes_memlock' <<<"$MAP0")
MEMLOCK1=$(jq -r '.bytes_memlock' <<<"$MAP1")
echo "live flow-table entries: $E0 before, $E1 with the flows, $E2 after ${SECS} s more (created $CREATED, evicted $EVICTED)"
echo "flow records at agent stop: $RECS (flushed in $(awk -v a="$T2" -v b="$T3" 'BEGIN {printf "%.1f", b - a}') s)"
awk -v m0="$MEMLOCK" -v m1="$MEMLOCK1" -v size=$SIZE -v e="$E1" -v r0="$RSS0" -v r1="$RSS1" -v r2="$RSS2" -v hwm="$HWM" \
    -v c0=$((U1 - U0 + S1 - S0)) -v c1=$((U3 - U2 + S3 - S2)) -v u1=$((U3 - U2)) -v s1=$((S3 - S2)) -v hz="$HZ" -v secs=$SECS 'BEGIN {
  printf "kernel map nj_flows: %d bytes memlock for %d entries (%d with %d live: preallocated, independent of use)\n", m0, size, m1, e
  printf "  = %.1f MiB per 100k entries of table size, %.0f bytes per entry\n", m0 / size * 1e5 / 1048576, m0 / size
  printf "agent RSS: %.1f MiB idle, %.1f MiB with %d live flows, %.1f MiB %d s later\n", r0 / 1024, r1 / 1024, e, r2 / 1024, secs
  printf "  = %.1f MiB per 100k live flows (%.0f bytes per flow); peak (VmHWM) %.1f MiB\n", (r2 - r0) / 1024 * 1e5 / e, (r2 - r0) * 1024 / e, hwm / 1024
  printf "agent CPU (utime+stime, %d s, 1 poll/s): %.2f s idle (%.1f%% of a core), %.2f s with %d live flows (%.1f%% of a core)\n", \
    secs, c0 / hz, c0 / hz / secs * 100, c1 / hz, e, c1 / hz / secs * 100
  printf "  = %.0f ms CPU per poll per 100k live flows (with the flows: user %.2f s, system %.2f s)\n", (c1 - c0) / hz / secs * 1000 * 1e5 / e, u1 / hz, s1 / hz
}'
delpair
