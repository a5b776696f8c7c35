package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DSN returns a key=value connection string for the instance.
func (i *Instance) DSN(user, password, db string) string {
	return Conninfo(i.host(), i.Port, user, password, db, "")
}

// Conninfo builds a libpq key=value connection string. application_name is
// how a standby is named in the primary's pg_stat_replication and in
// synchronous_standby_names.
func Conninfo(host string, port int, user, password, db, application string) string {
	kv := []string{"host=" + quoteConninfo(host), "port=" + strconv.Itoa(port), "user=" + quoteConninfo(user)}
	if password != "" {
		kv = append(kv, "password="+quoteConninfo(password))
	}
	if db != "" {
		kv = append(kv, "dbname="+quoteConninfo(db))
	}
	if application != "" {
		kv = append(kv, "application_name="+quoteConninfo(application))
	}
	kv = append(kv, "sslmode=disable", "connect_timeout=5")
	return strings.Join(kv, " ")
}

func quoteConninfo(s string) string {
	if s != "" && !strings.ContainsAny(s, ` '\`) {
		return s
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// connect opens one connection; a short connect timeout keeps a dead region
// from holding a step for long.
func connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > 5*time.Second {
		cfg.ConnectTimeout = 5 * time.Second
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// isUnreachable reports whether err says the server could not be reached
// (refused, timed out, shutting down, starting up): worth retrying.
func isUnreachable(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect
		// now (starting up / shutting down), 08xxx connection exceptions.
		return strings.HasPrefix(pe.Code, "57P") || strings.HasPrefix(pe.Code, "08")
	}
	return errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) || strings.Contains(err.Error(), "connection refused")
}

// LSN is a WAL position.
type LSN uint64

// ParseLSN reads "16/B374D848".
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return 0, fmt.Errorf("%q is not an LSN (want like 0/3000060)", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not an LSN: %w", s, err)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not an LSN: %w", s, err)
	}
	return LSN(h<<32 | l), nil
}

func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint64(l)>>32, uint32(l)) }

// MarshalText writes the LSN the way PostgreSQL does.
func (l LSN) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText reads an LSN written by MarshalText.
func (l *LSN) UnmarshalText(b []byte) error {
	v, err := ParseLSN(string(b))
	*l = v
	return err
}
