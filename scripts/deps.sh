#!/bin/sh
# Installs what Lifeboat's demo and tests need, once. Idempotent: run it as
# often as you like; it only installs what is missing. With package names
# as arguments it installs just those, the same way (scripts/peers.sh).
set -eu

# Debian packages the demo and tests use: PostgreSQL 15 for the database
# driver, the shop example and the lab (its binaries are used directly from
# /usr/lib/postgresql/15/bin; no system cluster is needed); dig (dnsutils)
# to check the DNS server's answers; BIND 9 for the RFC 2136 driver's tests;
# Chromium to render the drill's report (and, later, the dashboard);
# Prometheus for promtool, which checks what /metrics serves (the package's
# own server is never started: see policy-rc.d below).
PACKAGES="postgresql-15 dnsutils bind9 dnsperf chromium prometheus"
[ $# -eq 0 ] || PACKAGES="$*"

missing=""
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "deps: installing$missing"
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	# Lifeboat starts its own PostgreSQL instances; do not let the package
	# create and start a system cluster on port 5432.
	if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
		$SUDO mkdir -p /etc/postgresql-common
		echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.conf >/dev/null
	fi
	$SUDO apt-get update -qq
	# Lifeboat starts the servers it needs itself, on loopback, in temporary
	# directories: keep the packages from starting system services.
	policy=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
		$SUDO chmod +x /usr/sbin/policy-rc.d
		policy=/usr/sbin/policy-rc.d
		trap '$SUDO rm -f "$policy"' EXIT
	fi
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -o Dpkg::Options::=--force-confold $missing >/dev/null
	[ -z "$policy" ] || $SUDO rm -f "$policy"
fi

[ $# -eq 0 ] || exit 0

# Go: the toolchain Debian ships is too old; the machine's is at /usr/local/go.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	echo "deps: go is at /usr/local/go/bin; add it to PATH" >&2
fi
need="1.26"
have=$(PATH="$PATH:/usr/local/go/bin" go env GOVERSION 2>/dev/null | sed 's/^go//')
case "$have" in
	"") echo "deps: Go $need or newer is needed (https://go.dev/dl); none found" >&2; exit 1 ;;
esac
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
	echo "deps: Go $need or newer is needed; found $have" >&2
	exit 1
fi
# Modules, so that the first build does not look like a hang.
PATH="$PATH:/usr/local/go/bin" go mod download
