#!/bin/sh
# `make demo`: fail the example service over to its secondary region and back,
# on the script driver (examples/script/world.sh keeps a pretend world in
# files). Everything happens in ./demo, which is started afresh each time.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
demo="$root/demo"
rm -rf "$demo"
mkdir -p "$demo"
cp "$root/examples/script/lifeboat.yaml" "$root/examples/script/world.sh" "$demo/"
cd "$demo"
PATH="$root/bin:$PATH"
export PATH

if [ -t 1 ]; then b=$(printf '\033[1m'); n=$(printf '\033[0m'); else b=""; n=""; fi
say() { printf '\n%s# %s%s\n' "$b" "$*" "$n"; }
run() { printf '%s$ %s%s\n' "$b" "$*" "$n"; "$@"; }

say "The example service: a storefront (warm web, geo-replicated orders database, public names) and reports (cold workers, a backed-up warehouse)."
run lifeboat validate
run lifeboat status

say "The primary region, west, is lost. What would a failover do?"
run lifeboat plan failover

say "Fail over to east. (--yes: no prompt; a person at a terminal types the region instead.)"
run lifeboat failover --yes

say "The service now runs in east, at a new epoch; west's database is fenced."
run lifeboat status

say "West is back. Fail back home with zero data loss (the plan is printed first)."
run lifeboat failback --yes
run lifeboat status

say "A drill: switch over to east, and kill lifeboat with SIGKILL in the middle of it."
WORLD_DELAY=1 lifeboat switchover --yes >switchover.log 2>&1 &
pid=$!
# Wait until a few steps are done, then pull the plug.
i=0
while [ "$(grep -c ' done ' switchover.log 2>/dev/null || true)" -lt 4 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
kill -9 "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
printf '%s$ lifeboat switchover --yes   # killed with SIGKILL after:%s\n' "$b" "$n"
grep ' done ' switchover.log || true
run lifeboat status

say "Resume from the journal: completed steps are not applied again."
run lifeboat resume
run lifeboat status

say "Every run is journaled: step by step, attempt by attempt."
run lifeboat history
run sh -c 'lifeboat history "$(lifeboat history -o json | sed -n "s/.*\"id\": \"\(r-[^\"]*\)\".*/\1/p" | head -n1)"'
run lifeboat units
say "Done. The demo's files are in $demo; run lifeboat there to look around (lifeboat --help)."
