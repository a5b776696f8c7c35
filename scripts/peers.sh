#!/bin/sh
# Installs the peers that bench/compare runs Lifeboat against: Patroni with
# etcd, and pg_auto_failover, all from Debian. Idempotent: it installs only
# what is missing. It never starts their system services (bench/compare
# starts its own instances on loopback, in temporary directories).
set -eu

PACKAGES="patroni etcd-server etcd-client postgresql-15-auto-failover python3-psycopg2"

missing=""
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
	exit 0
fi
echo "peers: installing$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
# The packages pull in PostgreSQL: do not let it create a system cluster.
if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
	$SUDO mkdir -p /etc/postgresql-common
	echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.conf >/dev/null
fi
$SUDO apt-get update -qq
# etcd-server and patroni ship services that would start on install (etcd on
# the default ports 2379/2380): a policy-rc.d that answers 101 keeps every
# service stopped, as in scripts/deps.sh.
policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
	$SUDO chmod +x /usr/sbin/policy-rc.d
	policy=/usr/sbin/policy-rc.d
	trap '$SUDO rm -f "$policy"' EXIT
fi
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -o Dpkg::Options::=--force-confold $missing >/dev/null
[ -z "$policy" ] || $SUDO rm -f "$policy"
