#!/bin/sh
# The lab demo: a real two-region shop on this machine (PostgreSQL primary in
# west, streaming standby in east, the shop in both, WAN links between them)
# loses its primary region under a write load, fails over to east, gets west
# back fenced, rejoins it (its unreplicated writes quarantined) and fails back
# with zero lost writes; then a planned switchover each way under load.
# Everything happens in ./demo-lab, which is started afresh each time; the lab
# is always stopped at the end, also on failure.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
demo="$root/demo-lab"
lifeboat="$root/bin/lifeboat"
if [ ! -x "$lifeboat" ]; then
	echo "demo-lab: $lifeboat is missing: build it first (make build, or go build -o bin/lifeboat ./cmd/lifeboat)" >&2
	exit 1
fi
for d in lab auto; do
	if [ -f "$demo/$d/lab.pid" ]; then "$lifeboat" lab down --dir "$demo/$d" >/dev/null 2>&1 || true; fi
done
rm -rf "$demo"
mkdir -p "$demo"
cd "$demo"
# PostgreSQL runs as the postgres user when we are root: it must reach the lab.
chmod 755 "$demo"
PATH="$root/bin:$PATH"
export PATH

if [ -t 1 ]; then b=$(printf '\033[1m'); n=$(printf '\033[0m'); else b=""; n=""; fi
say() { printf '\n%s# %s%s\n' "$b" "$*" "$n"; }
run() { printf '%s$ %s%s\n' "$b" "$*" "$n"; "$@"; }

load_pid=""
start_load() { # start_load FILE: orders in the background, every attempt in FILE
	printf '%s$ lifeboat lab load --rate 50/s --out %s &%s\n' "$b" "$1" "$n"
	lifeboat lab load --rate 50/s --out "$1" >"$1.log" 2>&1 &
	load_pid=$!
	# Wait until the load has orders acknowledged, so it surely runs
	# before the fault.
	i=0
	while c=$(grep -c '"ok":true' "$1" 2>/dev/null || true); [ "${c:-0}" -lt 10 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
}
stop_load() {
	if [ -n "$load_pid" ]; then
		kill -TERM "$load_pid" 2>/dev/null || true
		wait "$load_pid" 2>/dev/null || true
		load_pid=""
		printf '%s$ kill -TERM <load>   # the load says:%s\n' "$b" "$n"
		tail -n 1 "$1.log"
	fi
}
finish() {
	rc=$?
	if [ -n "$load_pid" ]; then kill -TERM "$load_pid" 2>/dev/null || true; wait "$load_pid" 2>/dev/null || true; fi
	say "Stop the lab: every process it started, every port it listened on."
	if [ -f auto/lab.pid ]; then run lifeboat lab down --dir auto || rc=1; fi
	if [ -f lab/lab.pid ]; then run lifeboat lab down || rc=1; fi
	if [ $rc -ne 0 ]; then echo "demo-lab FAILED (exit $rc); the lab's log was $demo/lab/lab.log" >&2; fi
	exit $rc
}
trap finish EXIT
trap 'exit 130' INT TERM

start=$(date +%s)
say "Bring up the lab: west (primary) runs PostgreSQL and two shop instances, east a streaming standby and two read-only shops, central the witness; a front door forwards to the active region."
run lifeboat lab up
run lifeboat -f lab/lifeboat.yaml status

say "Start a write load: 50 orders/s through the front door; an order counts only when the shop answers 201 after the commit."
start_load lab/load.jsonl

say "First the WAN links between the regions break: replication to east stops, but west keeps acknowledging orders (async replication: this is the RPO exposure)."
run lifeboat lab fault partition
sleep 1

say "Disaster: the whole west region goes down (its PostgreSQL and shops stop, its links are cut). Orders now fail."
run lifeboat lab fault region-down west
sleep 1

say "Fail over to east: fence west, promote east's standby, start taking orders in east, move the front door."
run lifeboat -f lab/lifeboat.yaml failover --yes
run lifeboat -f lab/lifeboat.yaml status
sleep 1

say "West comes back. Its PostgreSQL starts READ-ONLY (fenced at the new epoch): it cannot take writes that would fork the data."
run lifeboat lab fault heal
run lifeboat lab status
sleep 1

say "Fail back home: rejoin west (its unreplicated writes copied to quarantine, then pg_rewind, then it streams from east), a zero-loss switchover, traffic back to west."
run lifeboat -f lab/lifeboat.yaml failback --yes
run lifeboat -f lab/lifeboat.yaml status
sleep 1
stop_load lab/load.jsonl

say "What west held that east never received is kept, with a report, not deleted:"
found=0
for r in lab/pgstate/quarantine/*/REPORT.txt; do
	[ -f "$r" ] || continue
	found=1
	run head -n 5 "$r"
	printf '… %s lines in all, one per quarantined transaction; the WAL itself is next to it.\n' "$(wc -l <"$r")"
done
[ $found -eq 1 ] || echo "(no quarantine: west had replicated every write before it went down)"

say "Check every acknowledged order on the primary (the orders west took during the partition must be in its quarantine), and show the write-unavailable windows the load saw (the measured RTO of each move)."
run lifeboat lab check --in lab/load.jsonl

say "A planned switchover in both directions, under load: zero acknowledged writes may be lost."
start_load lab/switchover.jsonl
run lifeboat -f lab/lifeboat.yaml switchover --yes
sleep 1
run lifeboat -f lab/lifeboat.yaml switchover --yes
sleep 1
stop_load lab/switchover.jsonl
run lifeboat lab check --in lab/switchover.jsonl

say "Now without a person: a controller per region (west, east and the witness central, each in its own network namespace, each with an etcd member of one cluster) watches the service and fails over on its own. Drill a region outage under load: 8 clients writing, west lost 3 s in."
run lifeboat lab down
run lifeboat lab up --dir auto --monitor automatic
sleep 3
run lifeboat drill --dir auto --scenario region-outage --duration 12s --clients 8
report=$(ls -t auto/drills/*-region-outage.html 2>/dev/null | head -n 1)
if [ -n "$report" ]; then
	say "The drill's report (one self-contained page: the timeline per 100 ms with the fault and each plan step, the lag, RTO and RPO against the objectives): $demo/$report"
fi

say "Done in $(( $(date +%s) - start ))s. The demo's files are in $demo (the load's attempts: lab/*.jsonl; the lab's log: lab/lab.log)."
