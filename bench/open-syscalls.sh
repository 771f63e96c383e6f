#!/bin/bash
# Syscalls of the agent's fanotify thread per ruled open (strace -c), as bench/findings.md §0
# measured them. Run it under the host lock: flock /tmp/seawall-host.lock bench/open-syscalls.sh BIN LABEL [OPENS]
# It starts its own agent (own bpffs dir) and one busybox container, and removes both.
# $1: agent binary; $2: label; $3: opens.
set -u
BIN=$1; LABEL=$2; N=${3:-2000}
W=$(mktemp -d /tmp/perf-sc-XXXX); mkdir -p $W/profiles
NAME=seawall-perf-sc-$$
BPF=/sys/fs/bpf/seawall-perf-sc-$$
cat > $W/profiles/perf.toml <<P
[profile]
name = "perf"
images = ["seawall-test/busybox*"]
mode = "enforce"

[files]
read_only = ["/etc/**"]
monitor = ["/etc/*"]
P
RUST_LOG=warn,seawall=info NO_COLOR=1 $BIN agent --profiles $W/profiles --output $W/events.jsonl --api-socket $W/agent.sock --bpffs $BPF </dev/null >/dev/null 2>$W/agent.log &
AP=$!
cleanup() {
  docker rm -f $NAME >/dev/null 2>&1
  kill -TERM $AP 2>/dev/null; wait $AP 2>/dev/null
  [ -e $BPF ] && $BIN uninstall --bpffs $BPF >/dev/null 2>&1
  rm -rf $W
}
trap cleanup EXIT
for i in $(seq 600); do grep -q "seawall agent ready" $W/agent.log && break; sleep 0.1; done
grep -q "seawall agent ready" $W/agent.log || { echo "agent did not start"; cat $W/agent.log; exit 1; }
docker run -d --name $NAME --network none seawall-test/busybox:latest sleep 120 >/dev/null
sleep 3
TID=""
for t in /proc/$AP/task/*; do [ "$(cat $t/comm)" = seawall-fanotif ] && TID=$(basename $t); done
[ -n "$TID" ] || { echo "no fanotify thread"; exit 1; }
# Warm up, and check the rule is in force: a write open is refused.
docker exec $NAME sh -c ': < /etc/passwd; echo x >> /etc/passwd' 2>&1 | head -2
strace -c -o $W/sc.txt -p $TID 2>/dev/null &
SP=$!
sleep 1
docker exec $NAME sh -c "i=0; while [ \$i -lt $N ]; do : < /etc/passwd; i=\$((i+1)); done"
sleep 1
kill -INT $SP; wait $SP
echo "== $LABEL: $N opens of /etc/passwd (read_only = [\"/etc/**\"], monitor = [\"/etc/*\"]), strace -c -p <seawall-fanotify tid>"
cat $W/sc.txt
awk -v n=$N '$NF=="total"{print "syscalls per open: " $4/n}' $W/sc.txt
