// Package tenant keeps the management catalog of a multi-tenant service
// (seed 004): where each tenant's database lives now (pool, region, epoch)
// and how it stands in a recovery. It places new tenants in their tier's
// pool, creates their database or schema there, and moves one tenant
// between pools on request.
//
// The catalog is an interface with an in-memory implementation (for pure
// tests) and a PostgreSQL one (the spec's tenants.catalog database, which
// is geo-replicated and fails over first).
package tenant

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// Catalog records where each tenant lives. Implementations are safe for
// concurrent use.
type Catalog interface {
	// Create records a new tenant; ErrTenantExists if the name is taken.
	Create(ctx context.Context, t lifeboat.Tenant) error
	// Get returns one tenant; ErrNoTenant if there is none by that name.
	Get(ctx context.Context, name string) (lifeboat.Tenant, error)
	// List returns the tenants that match f, sorted by name.
	List(ctx context.Context, f Filter) ([]lifeboat.Tenant, error)
	// Set applies ch to every tenant named, at once (one transaction), and
	// returns how many changed. When ch moves tenants (Region and Epoch), a
	// tenant already at a newer epoch than ch.Epoch is left as is: a newer
	// failover owns it (fencing). Names not in the catalog are skipped.
	Set(ctx context.Context, names []string, ch lifeboat.TenantChange) (changed int, err error)
	Close() error
}

// Mover is a catalog that can record a planned move of a tenant to
// another pool. It is apart from Catalog because lifeboat.TenantChange has
// no Pool: batches never change a tenant's pool, only its region.
type Mover interface {
	// Move records that the tenant now lives in pool, in region, at epoch;
	// it is refused (ErrStaleEpoch) if the tenant is at a newer epoch.
	Move(ctx context.Context, name, pool, region string, epoch uint64) (lifeboat.Tenant, error)
}

// Filter selects tenants; empty fields match everything.
type Filter struct {
	Tier, Pool, Region string
	States             []lifeboat.TenantState
}

// Match reports whether t passes the filter.
func (f Filter) Match(t lifeboat.Tenant) bool {
	return (f.Tier == "" || t.Tier == f.Tier) && (f.Pool == "" || t.Pool == f.Pool) &&
		(f.Region == "" || t.Region == f.Region) && (len(f.States) == 0 || slices.Contains(f.States, t.State))
}

var (
	// ErrTenantExists: a tenant by that name is already in the catalog.
	ErrTenantExists = errors.New("tenant already exists")
	// ErrNoTenant: no tenant by that name in the catalog.
	ErrNoTenant = errors.New("no such tenant")
	// ErrBadName: the name is not a safe identifier (see ValidName).
	ErrBadName = errors.New("invalid tenant name")
	// ErrNoPrimary: the pool (or catalog) has no primary copy right now,
	// e.g. between losing a region and the recovery creating the DR copy.
	ErrNoPrimary = errors.New("no primary copy")
	// ErrRefused: a move that would be wrong (another tier's pool, a
	// tenant in recovery) was refused; nothing was changed.
	ErrRefused = errors.New("move refused")
)

// Ops named in errors (lifeboat.Error.Op) so that logs say which
// catalog or pool action failed.
const (
	OpCreate lifeboat.Op = "tenant.create"
	OpGet    lifeboat.Op = "tenant.get"
	OpList   lifeboat.Op = "tenant.list"
	OpSet    lifeboat.Op = "tenant.set"
	OpMove   lifeboat.Op = "tenant.move"
	OpOpen   lifeboat.Op = "tenant.catalog"
)

// MaxNameLen is PostgreSQL's identifier limit (NAMEDATALEN-1 bytes).
const MaxNameLen = 63

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// reserved names are PostgreSQL's own databases and schemas, and
// Lifeboat's catalog schema: a tenant by one of these names would be
// created on top of them.
var reserved = []string{"postgres", "template0", "template1", "public", "information_schema", "lifeboat"}

// ValidName says why name cannot be a tenant's name, or returns nil. A
// tenant's name is its database (or schema) name and what clients put in
// the startup message, so it must be a PostgreSQL identifier that needs no
// quoting: lower-case ASCII letters, digits and underscores, starting with
// a letter, at most 63 bytes, not starting with "pg_" (reserved by
// PostgreSQL), and not postgres, template0, template1, public,
// information_schema or lifeboat.
func ValidName(name string) error {
	bad := func(why string) error {
		return lifeboat.Permanent(OpCreate, name, fmt.Errorf("%w %q: %s", ErrBadName, name, why))
	}
	switch {
	case name == "":
		return bad("the name is empty; use lower-case letters, digits and underscores, starting with a letter")
	case len(name) > MaxNameLen:
		return bad(fmt.Sprintf("it is %d bytes, PostgreSQL names are at most %d", len(name), MaxNameLen))
	case !nameRE.MatchString(name):
		hint := strings.Map(func(r rune) rune {
			switch {
			case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
				return r
			case r >= 'A' && r <= 'Z':
				return r + 'a' - 'A'
			case r == '-' || r == '.' || r == ' ':
				return '_'
			}
			return -1
		}, name)
		msg := "use only lower-case letters, digits and underscores, starting with a letter"
		if hint != "" && nameRE.MatchString(hint) {
			msg += fmt.Sprintf(" (e.g. %s)", hint)
		}
		return bad(msg)
	case strings.HasPrefix(name, "pg_"):
		return bad(`names starting with "pg_" are reserved by PostgreSQL`)
	case slices.Contains(reserved, name):
		return bad("it is a name PostgreSQL or Lifeboat already uses; pick another")
	}
	return nil
}

// validChange checks a change before it is applied.
func validChange(ch lifeboat.TenantChange) error {
	if (ch.Region == "") != (ch.Epoch == 0) {
		return lifeboat.Permanent(OpSet, "", fmt.Errorf("a tenant change moves tenants with both region and epoch, or neither (got region %q, epoch %d)", ch.Region, ch.Epoch))
	}
	if ch.State == "" && ch.Reason == "" && ch.Region == "" && ch.Recovered.IsZero() {
		return lifeboat.Permanent(OpSet, "", errors.New("an empty tenant change: set state, reason, region and epoch, or recovered"))
	}
	return nil
}

// apply writes ch into t as Set does; it reports false when fencing
// leaves t as is.
func apply(t *lifeboat.Tenant, ch lifeboat.TenantChange) bool {
	if ch.Epoch != 0 && t.Epoch > ch.Epoch {
		return false
	}
	if ch.State != "" {
		t.State = ch.State
	}
	// A new state replaces the reason of the old one (a failed tenant
	// made available has no reason left).
	if ch.State != "" || ch.Reason != "" {
		t.Reason = ch.Reason
	}
	if ch.Region != "" {
		t.Region, t.Epoch = ch.Region, ch.Epoch
	}
	if !ch.Recovered.IsZero() {
		t.Recovered = ch.Recovered.UTC()
	}
	return true
}

var tableRE = regexp.MustCompile(`^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$`)

func cut(table string) (schema, name string, ok bool) { return strings.Cut(table, ".") }
