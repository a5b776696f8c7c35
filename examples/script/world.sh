#!/bin/sh
# world.sh: a pretend world for the script driver of lifeboat.yaml.
#
# Lifeboat runs `./world.sh <verb>` for each driver action, with LIFEBOAT_*
# variables saying what to act on (LIFEBOAT_RESOURCE, LIFEBOAT_REGION,
# LIFEBOAT_EPOCH, ...). This script keeps its "world" as one small file per
# resource in $WORLD, each holding key=value lines. To drive real systems,
# copy it and replace each verb's body with calls to your cloud, database
# and DNS, keeping the rules every verb here follows:
#   - idempotent: doing it twice is the same as doing it once;
#   - fenced: refuse an action whose LIFEBOAT_EPOCH is older than the epoch
#     already acted for on the resource (reason on stderr, exit 1);
#   - atomic: write a temporary file, then mv it into place;
#   - exit 0 = done, 75 = failed but try again, anything else = failed.
# Status verbs print key=value lines on stdout.
set -eu

WORLD=${LIFEBOAT_WORLD:-${LIFEBOAT_SPEC_DIR:-.}/world}
PRIMARY=west SECONDARY=east # the regions of lifeboat.yaml
VERB=${1:?usage: world.sh <verb>, e.g. world.sh compute-status}
R=${LIFEBOAT_RESOURCE:-} E=${LIFEBOAT_EPOCH:-0}
C=${LIFEBOAT_COMPONENT:-} G=${LIFEBOAT_REGION:-}
DB=${LIFEBOAT_SERVICE:-}-${LIFEBOAT_UNIT:-}-$C # a database across its regions

die() { echo "world.sh $VERB $R: $*" >&2; exit 1; }
now() { date -u +%Y-%m-%dT%H:%M:%SZ; }
pause() { sleep "${WORLD_DELAY:-0.2}"; } # so the demo is watchable
other() { if [ "$1" = "$PRIMARY" ]; then echo "$SECONDARY"; else echo "$PRIMARY"; fi; }

# initial COMPONENT REGION: where the example starts (lifeboat.InitialState):
# west runs everything; east has web warm, orders a replica, warehouse backups.
initial() {
	case $1@$2 in
	web@"$PRIMARY") set -- exists=true instances=3 healthy=3 ;;
	web@*) set -- exists=true instances=0 healthy=0 ;; # warm standby
	worker@"$PRIMARY") set -- exists=true instances=2 healthy=2 ;;
	worker@*) set -- exists=false instances=0 healthy=0 ;; # cold standby
	orders@"$PRIMARY" | warehouse@"$PRIMARY") set -- role=primary ;;
	orders@*) set -- role=replica ;;
	warehouse@*) set -- role=backups ;;
	www@*) set -- region="$PRIMARY" since="$(now)" ;;
	*) die "no initial state for component $1 in $2: add it to initial() in world.sh" ;;
	esac
	printf '%s\n' "$@" epoch=1
}

# initial_backup REGION: the newest backup of $DB kept in REGION; the
# warehouse starts with a scheduled backup kept in the standby region.
initial_backup() {
	case $C@$1 in
	warehouse@"$SECONDARY") printf '%s\n' id=scheduled-1 taken="$(now)" region="$1" epoch=0 ;;
	*) echo id= ;;
	esac
}

# load RESOURCE COMPONENT REGION: create the resource's file from the
# initial state the first time it is touched.
load() {
	[ -f "$WORLD/$1" ] && return
	mkdir -p "$WORLD"
	initial "$2" "$3" >"$WORLD/.$1.$$"
	mv "$WORLD/.$1.$$" "$WORLD/$1"
}
load_backup() { # REGION
	[ -f "$WORLD/$DB-$1.backup" ] && return
	mkdir -p "$WORLD"
	initial_backup "$1" >"$WORLD/.$DB-$1.backup.$$"
	mv "$WORLD/.$DB-$1.backup.$$" "$WORLD/$DB-$1.backup"
}

# get RESOURCE KEY: a value from a resource's file.
get() { sed -n "s/^$2=//p" "$WORLD/$1" | tail -n 1; }

# show RESOURCE KEY...: print keys as key=value lines (a status).
show() {
	r=$1
	shift
	for k in "$@"; do echo "$k=$(get "$r" "$k")"; done
}

# put RESOURCE KEY=VALUE...: set keys in a resource's file, atomically.
put() {
	f=$WORLD/$1 tmp=$WORLD/.$1.$$
	shift
	printf '%s\n' "$@" | awk -F= 'NR == FNR { new[$1] = $0; keys[++n] = $1; next }
		!($1 in new) { print }
		END { for (i = 1; i <= n; i++) print new[keys[i]] }' - "$f" >"$tmp"
	mv "$tmp" "$f"
}

# fenced RESOURCE: refuse an epoch older than the one already acted for.
fenced() {
	seen=$(get "$1" epoch)
	[ "$E" -ge "${seen:-0}" ] ||
		die "refused: epoch $E is older than epoch $seen already acted for on $1; a newer failover owns it"
}

case $VERB in
compute-status)
	load "$R" "$C" "$G"
	show "$R" exists instances healthy epoch
	;;
compute-provision)
	load "$R" "$C" "$G"; fenced "$R"
	if [ "$(get "$R" exists)" != true ]; then
		pause
		put "$R" exists=true instances=0 healthy=0 artifact="${LIFEBOAT_ARTIFACT:-}"
	fi
	put "$R" epoch="$E"
	;;
compute-scale)
	load "$R" "$C" "$G"; fenced "$R"
	[ "$(get "$R" exists)" = true ] || die "the scale set does not exist in $G: provision it first (compute.provision)"
	n=${LIFEBOAT_INSTANCES:?LIFEBOAT_INSTANCES is not set}
	if [ "$(get "$R" instances)" != "$n" ]; then
		pause
		put "$R" instances="$n" healthy="$n"
	fi
	put "$R" epoch="$E"
	;;
compute-delete)
	load "$R" "$C" "$G"; fenced "$R"
	if [ "$(get "$R" exists)" = true ]; then
		pause
		put "$R" exists=false instances=0 healthy=0
	fi
	put "$R" epoch="$E"
	;;
database-status)
	load "$R" "$C" "$G"
	show "$R" role epoch
	;;
database-fence)
	load "$R" "$C" "$G"; fenced "$R"
	if [ "$(get "$R" role)" = primary ]; then
		pause
		put "$R" role=fenced
	fi
	put "$R" epoch="$E"
	;;
database-promote)
	load "$R" "$C" "$G"; fenced "$R"
	case $(get "$R" role) in
	primary) ;;
	replica) pause; put "$R" role=primary ;;
	*) die "cannot promote: it is $(get "$R" role), not a replica" ;;
	esac
	put "$R" epoch="$E"
	;;
database-switchover) # make $R primary and $F (the old primary) its replica, losing nothing
	F=${LIFEBOAT_FROM_RESOURCE:?LIFEBOAT_FROM_RESOURCE is not set}
	load "$R" "$C" "$G"; load "$F" "$C" "${LIFEBOAT_FROM_REGION:?LIFEBOAT_FROM_REGION is not set}"
	fenced "$R"; fenced "$F"
	if [ "$(get "$R" role)" != primary ] || [ "$(get "$F" role)" != replica ]; then
		case $(get "$F" role) in primary | fenced) ;; *) die "cannot switch over from $F: it is $(get "$F" role), not the primary" ;; esac
		[ "$(get "$R" role)" = replica ] || die "cannot switch over: it is $(get "$R" role), not a replica of $F; rejoin it first"
		put "$F" role=fenced epoch="$E" # stop writes, then let $R replay everything
		pause
		put "$R" role=primary epoch="$E"
		put "$F" role=replica
	fi
	put "$R" epoch="$E"; put "$F" epoch="$E"
	;;
database-rejoin) # make $R (an old primary) a replica of $F
	F=${LIFEBOAT_FROM_RESOURCE:?LIFEBOAT_FROM_RESOURCE is not set}
	load "$R" "$C" "$G"; load "$F" "$C" "${LIFEBOAT_FROM_REGION:?LIFEBOAT_FROM_REGION is not set}"; fenced "$R"
	case $(get "$R" role) in
	replica) ;;
	primary | fenced)
		[ "$(get "$F" role)" = primary ] || die "cannot rejoin as a replica of $F: it is $(get "$F" role), not the primary"
		pause
		echo "world.sh: $R: writes that never reached $F are kept in quarantine" >&2
		put "$R" role=replica
		;;
	*) die "cannot rejoin: it is $(get "$R" role), not an old primary" ;;
	esac
	put "$R" epoch="$E"
	;;
backup-latest) # the newest backup of $DB, wherever it is kept
	best=
	for g in "$PRIMARY" "$SECONDARY"; do
		b=$DB-$g.backup
		load_backup "$g"
		[ -n "$(get "$b" id)" ] || continue
		# newest: the higher epoch, then the later time (RFC 3339 in UTC sorts as text)
		if [ -z "$best" ] || [ "$(get "$b" epoch)" -gt "$(get "$best" epoch)" ] ||
			{ [ "$(get "$b" epoch)" -eq "$(get "$best" epoch)" ] && expr "$(get "$b" taken)" \> "$(get "$best" taken)" >/dev/null; }; then
			best=$b
		fi
	done
	if [ -n "$best" ]; then show "$best" id taken region epoch; else echo id=; fi
	;;
backup-take) # back up $R and keep the copy in the other region
	load "$R" "$C" "$G"; fenced "$R"
	case $(get "$R" role) in primary | fenced) ;; *) die "cannot back up: it is $(get "$R" role); back up the primary" ;; esac
	kept=$(other "$G")
	pause
	printf '%s\n' id="backup-$E-$(date -u +%s)" taken="$(now)" region="$kept" epoch="$E" >"$WORLD/.$DB-$kept.backup.$$"
	mv "$WORLD/.$DB-$kept.backup.$$" "$WORLD/$DB-$kept.backup"
	put "$R" epoch="$E"
	show "$DB-$kept.backup" id taken region epoch
	;;
backup-restore) # make $R a primary from the newest backup kept in its region
	load "$R" "$C" "$G"; load_backup "$G"; fenced "$R"
	id=$(get "$DB-$G.backup" id)
	[ -n "$id" ] || die "no backup of $DB is kept in $G: take one (backup.take) in $(other "$G") first"
	pause
	put "$R" role=primary restored="$id" epoch="$E"
	;;
traffic-status)
	load "$R" "$C" "$G"
	show "$R" region epoch since
	;;
traffic-switch) # two steps: stop routing to the old region, then route to the new one
	load "$R" "$C" "$G"; fenced "$R"
	if [ "$(get "$R" region)" != "$G" ]; then
		put "$R" region= epoch="$E"
		pause
		put "$R" region="$G" since="$(now)" names="${LIFEBOAT_NAMES:-}"
	fi
	put "$R" epoch="$E"
	;;
notify)
	echo "lifeboat: ${LIFEBOAT_SERVICE:-?} run ${LIFEBOAT_RUN:-?} at epoch $E: ${LIFEBOAT_STEP:-starting}"
	;;
*)
	echo "world.sh: unknown verb '$VERB'; use compute-status|provision|scale|delete, database-status|fence|promote|switchover|rejoin, backup-latest|take|restore, traffic-status|switch or notify" >&2
	exit 2
	;;
esac
