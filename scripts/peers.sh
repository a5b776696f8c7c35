#!/bin/sh
# Installs the peers that bench/compare runs Lifeboat against: Patroni with
# etcd, and pg_auto_failover, all from Debian. Idempotent, and it never
# starts their system services (bench/compare starts its own instances on
# loopback, in temporary directories): scripts/deps.sh does the installing.
set -eu
exec "$(dirname "$0")/deps.sh" patroni etcd-server etcd-client postgresql-15-auto-failover python3-psycopg2
