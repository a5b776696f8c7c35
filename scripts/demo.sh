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

say "West is back. Fail back home with zero data loss."
run lifeboat plan failback
run lifeboat failback --yes
run lifeboat status

say "Every run is journaled: step by step, attempt by attempt."
run lifeboat history
run lifeboat units
say "Done. The demo's files are in $demo; run lifeboat there to look around (lifeboat --help)."
