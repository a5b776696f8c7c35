// Package recovery brings a lost region's tenants back in the other region,
// in seed 004's order: the catalog first; geo-replicated pools promoted and
// their tenants made available in batches; their capacity raised; geo-restore
// pools created and their tenants restored one by one, in priority order or
// on demand (Hurry).
//
// The Scheduler is a pure state machine (the etcd-io/raft way, like
// monitor.Decide): events in, actions out, no clock and no I/O, so every
// case is a scenario script in testdata/scheduler. Start runs a Scheduler
// against a Backend and a Catalog.
package recovery

import (
	"errors"
	"fmt"
	"strings"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// op names this package's errors (lifeboat.Error.Op).
const op lifeboat.Op = "tenant.recover"

// Defaults of the spec's tenants section (seed 004: batches of at least 20).
const (
	DefaultBatch       = 20
	DefaultConcurrency = 4
	// DefaultMaxAttempts: a batch, restore or pool operation is tried this
	// many times before its tenants are marked failed.
	DefaultMaxAttempts = 3
)

// Config is what a recovery needs to know besides the tenants.
type Config struct {
	// Tenants is the spec's tenants section (pools, tiers, batch,
	// concurrency); zero Batch and Concurrency take the defaults.
	Tenants lifeboat.Tenants
	// Primary is the spec's primary region: where a pool without a region
	// lives, and so where a tenant without a region is.
	Primary string
	// Lost is the region lost; its tenants (Tenant.Region) are recovered
	// into Target. Tenants elsewhere are not touched (seed 004, scenario 3).
	Lost, Target string
	// Epoch is the service epoch of the failover: written with each
	// tenant's new region, so an older run cannot move it back.
	Epoch uint64
	// MaxAttempts: tries of one batch, restore or pool operation before
	// its tenants are marked failed (an error marked permanent is not
	// retried). Default 3.
	MaxAttempts int
}

// DefaultConfig is a config with the defaults filled in; the caller sets
// the spec section, the regions and the epoch.
func DefaultConfig() Config {
	return Config{Tenants: lifeboat.Tenants{Batch: DefaultBatch, Concurrency: DefaultConcurrency}, MaxAttempts: DefaultMaxAttempts}
}

// withDefaults fills in zero values.
func (c Config) withDefaults() Config {
	if c.Tenants.Batch == 0 {
		c.Tenants.Batch = DefaultBatch
	}
	if c.Tenants.Concurrency == 0 {
		c.Tenants.Concurrency = DefaultConcurrency
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	return c
}

var errConfig = errors.New("invalid tenant recovery config")

// ValidateConfig says what is wrong with c, if anything. The error is
// permanent: only a spec (or caller) change fixes it.
func ValidateConfig(c Config) error {
	c = c.withDefaults()
	var problems []string
	if c.Lost == "" || c.Target == "" || c.Lost == c.Target {
		problems = append(problems, fmt.Sprintf("lost region %q and target region %q must be two named regions", c.Lost, c.Target))
	}
	if c.Tenants.Batch < 1 {
		problems = append(problems, fmt.Sprintf("tenants.batch %d must be at least 1 (default %d)", c.Tenants.Batch, DefaultBatch))
	}
	if c.Tenants.Concurrency < 1 {
		problems = append(problems, fmt.Sprintf("tenants.concurrency %d must be at least 1 (default %d)", c.Tenants.Concurrency, DefaultConcurrency))
	}
	if c.MaxAttempts < 1 {
		problems = append(problems, fmt.Sprintf("max attempts %d must be at least 1 (default %d)", c.MaxAttempts, DefaultMaxAttempts))
	}
	// A pool is recovered one way: its tiers must agree on the strategy.
	strategy := map[string]lifeboat.TenantStrategy{}
	for _, name := range sortedKeys(c.Tenants.Tiers) {
		tier := c.Tenants.Tiers[name]
		switch tier.Strategy {
		case lifeboat.StrategyGeoReplicate, lifeboat.StrategyGeoRestore:
		default:
			problems = append(problems, fmt.Sprintf("tier %s: strategy %q is not geo-replicate or geo-restore", name, tier.Strategy))
			continue
		}
		for _, p := range tierPools(tier) {
			if _, ok := c.Tenants.Pools[p]; !ok {
				problems = append(problems, fmt.Sprintf("tier %s names pool %q, which is not under tenants.pools", name, p))
				continue
			}
			if s, ok := strategy[p]; ok && s != tier.Strategy {
				problems = append(problems, fmt.Sprintf("pool %s is %s for one tier and %s for tier %s: a pool is recovered one way; give the tiers separate pools", p, s, tier.Strategy, name))
			}
			strategy[p] = tier.Strategy
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return lifeboat.Permanent(op, "", fmt.Errorf("%w: %s; fix the tenants: section of the spec", errConfig, strings.Join(problems, "; ")))
}

// tierPools are the pools a tier places tenants in.
func tierPools(t lifeboat.Tier) []string {
	var ps []string
	if t.Pool != "" {
		ps = append(ps, t.Pool)
	}
	for _, p := range t.Pools {
		if p != "" && p != t.Pool {
			ps = append(ps, p)
		}
	}
	return ps
}
