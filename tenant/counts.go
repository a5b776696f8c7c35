package tenant

import (
	"context"
	"fmt"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// OpCount names the errors of Counts.
const OpCount lifeboat.Op = "tenant.count"

// TierCounts is how many tenants each tier has in each state.
type TierCounts map[string]map[lifeboat.TenantState]int

// Add counts n tenants of tier in state.
func (c TierCounts) Add(tier string, state lifeboat.TenantState, n int) {
	if c[tier] == nil {
		c[tier] = map[lifeboat.TenantState]int{}
	}
	c[tier][state] += n
}

// Total is how many tenants there are, and how many in each state.
func (c TierCounts) Total() (total int, byState map[lifeboat.TenantState]int) {
	byState = map[lifeboat.TenantState]int{}
	for _, states := range c {
		for st, n := range states {
			byState[st] += n
			total += n
		}
	}
	return total, byState
}

// Counter is a catalog that counts its tenants by tier and state without
// listing them: what 'lifeboat status' shows, cheap for 10,000 tenants.
type Counter interface {
	Counts(ctx context.Context) (TierCounts, error)
}

var (
	_ Counter = (*PostgresCatalog)(nil)
	_ Counter = (*MemoryCatalog)(nil)
)

// Counts counts the tenants by tier and state in one GROUP BY.
func (c *PostgresCatalog) Counts(ctx context.Context) (TierCounts, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	rows, err := c.pool.Query(ctx, `SELECT tier, state, count(*) FROM `+c.cfg.Table+` GROUP BY tier, state`)
	if err != nil {
		return nil, classify(OpCount, c.cfg.Table, fmt.Errorf("counting the tenants in %s: %w", c.cfg.Table, err))
	}
	defer rows.Close()
	out := TierCounts{}
	for rows.Next() {
		var tier, state string
		var n int64
		if err := rows.Scan(&tier, &state, &n); err != nil {
			return nil, classify(OpCount, c.cfg.Table, fmt.Errorf("counting the tenants in %s: %w", c.cfg.Table, err))
		}
		out.Add(tier, lifeboat.TenantState(state), int(n))
	}
	if err := rows.Err(); err != nil {
		return nil, classify(OpCount, c.cfg.Table, fmt.Errorf("counting the tenants in %s: %w", c.cfg.Table, err))
	}
	return out, nil
}

// Counts counts the tenants by tier and state.
func (m *MemoryCatalog) Counts(ctx context.Context) (TierCounts, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := TierCounts{}
	for _, t := range m.tenants {
		out.Add(t.Tier, t.State, 1)
	}
	return out, nil
}

// Count counts cat's tenants by tier and state: in one query when cat is
// a Counter, else by listing them.
func Count(ctx context.Context, cat Catalog) (TierCounts, error) {
	if c, ok := cat.(Counter); ok {
		return c.Counts(ctx)
	}
	ts, err := cat.List(ctx, Filter{})
	if err != nil {
		return nil, err
	}
	out := TierCounts{}
	for _, t := range ts {
		out.Add(t.Tier, t.State, 1)
	}
	return out, nil
}
