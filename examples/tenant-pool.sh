#!/bin/sh
# A geo-restore pool's DR copy as a local PostgreSQL cluster: the commands
# of tenants.pools.<pool>.provision, for trying Lifeboat on one machine.
# In production these are calls to your cloud, Terraform or DBA tooling.
#
#   provision:
#     create:    [./tenant-pool.sh, create]
#     read-only: [./tenant-pool.sh, read-only]
#     delete:    [./tenant-pool.sh, delete]
#
# Lifeboat sets LIFEBOAT_POOL, LIFEBOAT_REGION, LIFEBOAT_ISOLATION and
# LIFEBOAT_ENDPOINT (postgres://user:password@host:port/db, the pool
# database's endpoint in that region; no URL-escaped characters here) and
# runs this in the spec's directory (LIFEBOAT_SPEC_DIR). The cluster lives
# in $POOL_DATA, by default pools/<pool>-<region> next to the spec; when
# this runs as root, PostgreSQL runs as the postgres OS user, which must be
# able to reach that directory. PG_BIN: PostgreSQL's programs.
set -eu

action=${1:?usage: tenant-pool.sh create|read-only|delete}
: "${LIFEBOAT_POOL:?run by Lifeboat: LIFEBOAT_POOL is not set}"
: "${LIFEBOAT_REGION:?run by Lifeboat: LIFEBOAT_REGION is not set}"
: "${LIFEBOAT_ENDPOINT:?run by Lifeboat: LIFEBOAT_ENDPOINT is not set}"
bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
spec_dir=${LIFEBOAT_SPEC_DIR:-$(pwd)}
data=${POOL_DATA:-$spec_dir/pools/$LIFEBOAT_POOL-$LIFEBOAT_REGION}

# postgres://user:password@host:port/db → its parts.
rest=${LIFEBOAT_ENDPOINT#*://}
creds=
case $rest in *@*) creds=${rest%%@*}; rest=${rest#*@} ;; esac
hostport=${rest%%/*}
host=${hostport%:*}
port=${hostport##*:}
[ "$port" != "$hostport" ] || port=5432
user=${creds%%:*}
password=
case $creds in *:*) password=${creds#*:} ;; esac
[ -n "$user" ] || user=postgres

# PostgreSQL refuses to run as root.
as_pg() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

running() { as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; }

case $action in
create)
	# Idempotent: a running copy is left as is, a stopped one started.
	if [ ! -f "$data/PG_VERSION" ]; then
		rm -rf "$data"
		mkdir -p "$data"
		chmod 700 "$data"
		pw=$(mktemp)
		printf '%s\n' "$password" >"$pw"
		if [ "$(id -u)" = 0 ]; then chown postgres "$data" "$pw"; fi
		as_pg "$bin/initdb" -D "$data" -U "$user" --pwfile="$pw" \
			--auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C >/dev/null
		rm -f "$pw"
	fi
	if ! running; then
		touch "$data.log"
		if [ "$(id -u)" = 0 ]; then chown postgres "$data.log"; fi
		as_pg "$bin/pg_ctl" -D "$data" -l "$data.log" -w -t 60 \
			-o "-c listen_addresses=$host -p $port -k ''" start >/dev/null
	fi
	echo "pool $LIFEBOAT_POOL in $LIFEBOAT_REGION answers on $host:$port ($data)"
	;;
read-only)
	# A standby with no primary to follow refuses every write, a
	# superuser's too (default_transaction_read_only can be SET off).
	[ -f "$data/PG_VERSION" ] || { echo "no cluster in $data" >&2; exit 1; }
	if [ ! -f "$data/standby.signal" ]; then
		as_pg touch "$data/standby.signal"
		if running; then
			as_pg "$bin/pg_ctl" -D "$data" -l "$data.log" -m fast -w -t 60 restart >/dev/null
		fi
	fi
	running || as_pg "$bin/pg_ctl" -D "$data" -l "$data.log" -w -t 60 \
		-o "-c listen_addresses=$host -p $port -k ''" start >/dev/null
	echo "pool $LIFEBOAT_POOL in $LIFEBOAT_REGION is read-only"
	;;
delete)
	if [ -f "$data/PG_VERSION" ] && running; then
		as_pg "$bin/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null
	fi
	rm -rf "$data" "$data.log"
	echo "pool $LIFEBOAT_POOL in $LIFEBOAT_REGION deleted"
	;;
*)
	echo "unknown action $action: want create, read-only or delete" >&2
	exit 2
	;;
esac
