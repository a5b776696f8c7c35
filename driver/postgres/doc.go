// Package postgres is a lifeboat.DatabaseDriver for PostgreSQL 15 streaming
// replication: status, fence, promote, zero-loss switchover, and rejoin of
// an old primary with its un-replicated writes kept in quarantine. Instance
// is the process control it uses when Lifeboat runs the host (initdb,
// pg_ctl, pg_basebackup, pg_rewind, as the postgres user when root); the
// lab and package pgtest start clusters with it too.
package postgres
