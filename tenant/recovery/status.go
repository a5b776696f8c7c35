package recovery

import (
	"fmt"
	"strings"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// TenantStatus is where one tenant of the recovery stands.
type TenantStatus struct {
	Name, Tier, Pool string
	State            lifeboat.TenantState
	// Reason: why it failed, or why its last attempt failed (queued again).
	Reason string
	// Running: in a batch or a restore that is running now.
	Running bool
	// Hurried: someone connected to it; it is at the head of its queue.
	Hurried  bool
	Attempts int
}

func (t *tenant) status() TenantStatus {
	return TenantStatus{Name: t.name, Tier: t.tier, Pool: t.pool, State: t.state, Reason: t.reason,
		Running: t.busy, Hurried: t.hurried, Attempts: t.attempts}
}

// Tenant says where a tenant stands; false if it is not being recovered
// (not in the lost region: it is served where the catalog says).
func (s *Scheduler) Tenant(name string) (TenantStatus, bool) {
	t := s.tenants[name]
	if t == nil {
		return TenantStatus{}, false
	}
	return t.status(), true
}

// Tenants lists every tenant being recovered, by name.
func (s *Scheduler) Tenants() []TenantStatus {
	out := make([]TenantStatus, len(s.names))
	for i, n := range s.names {
		out[i] = s.tenants[n].status()
	}
	return out
}

// Status is the recovery at a glance.
type Status struct {
	Lost, Target string
	// Total tenants being recovered; Counts by state (a tenant in a batch
	// running is still queued: it is not available yet).
	Total  int
	Counts map[lifeboat.TenantState]int
	// Batches and Restores running now.
	Batches, Restores int
	Catalog           bool // the catalog was promoted
	Cancelled         bool
	Done              bool
	// Waiting says, in plain words, what the recovery waits for and why.
	Waiting []string
}

// String renders the status: a line of counts, then what it waits for.
func (st Status) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s → %s: %d tenants: %d available, %d queued, %d restoring, %d failed; %d batches and %d restores running",
		st.Lost, st.Target, st.Total, st.Counts[lifeboat.TenantAvailable], st.Counts[lifeboat.TenantQueued],
		st.Counts[lifeboat.TenantRestoring], st.Counts[lifeboat.TenantFailed], st.Batches, st.Restores)
	if st.Done {
		b.WriteString("; done")
	}
	for _, w := range st.Waiting {
		b.WriteString("\n- ")
		b.WriteString(w)
	}
	return b.String()
}

// Status counts the tenants and explains what the recovery waits for.
func (s *Scheduler) Status() Status {
	st := Status{Lost: s.cfg.Lost, Target: s.cfg.Target, Total: len(s.names), Counts: map[lifeboat.TenantState]int{},
		Batches: s.batches, Restores: s.restores, Catalog: s.catalog, Cancelled: s.cancelled, Done: s.Done()}
	for _, n := range s.names {
		st.Counts[s.tenants[n].state]++
	}
	say := func(format string, a ...any) { st.Waiting = append(st.Waiting, fmt.Sprintf(format, a...)) }
	conc := s.cfg.Tenants.Concurrency
	if !s.catalog && !s.cancelled && s.left > 0 {
		say("the catalog (%s) is not promoted in %s yet: nothing starts before it (seed 004: the catalog first)", orNone(s.cfg.Tenants.Catalog), s.cfg.Target)
	}
	if s.cancelled {
		say("cancelled (failback's first step): nothing new starts; %d batches and %d restores running finish; %d tenants stay where they are",
			s.batches, s.restores, s.left-s.batches0()-s.restores)
	}
	for _, name := range s.poolNames {
		p := s.pools[name]
		queued, running := 0, 0
		for _, t := range p.order[p.head:] {
			switch {
			case t.busy:
				running++
			case t.state == lifeboat.TenantQueued:
				queued++
			}
		}
		switch p.kind {
		case lifeboat.StrategyGeoReplicate:
			switch {
			case !p.ready && p.left > 0:
				say("pool %s: %d tenants wait for the pool's promotion in %s (geo-replicated: promoted by the failover plan)", name, p.left, s.cfg.Target)
			case p.left > 0:
				line := fmt.Sprintf("pool %s: promoted in %s; %d tenants in %d batches running, %d queued", name, s.cfg.Target, running, p.running, queued)
				if queued > 0 && s.batches >= conc && !s.cancelled {
					line += fmt.Sprintf(", waiting for a free slot (%d of %d batches running, tenants.concurrency)", s.batches, conc)
				}
				say("%s", line)
			}
			switch {
			case p.raising:
				say("pool %s: raising its capacity in %s to %d connections (attempt %d)", name, s.cfg.Target, p.raiseTo, p.raiseTry)
			case p.raiseErr != "" && !p.raised:
				say("pool %s: capacity not raised to %d in %s: %s; raise it by hand (it serves with its standby capacity meanwhile)", name, p.raiseTo, s.cfg.Target, p.raiseErr)
			}
		case lifeboat.StrategyGeoRestore:
			switch {
			case p.gaveUp != "":
				say("%s; its tenants are failed: create it by hand, then recover them again", p.gaveUp)
			case p.op:
				say("pool %s: being created in %s (attempt %d); its %d tenants are restored once it exists", name, s.cfg.Target, p.opTries, p.left)
			case !p.ready && p.left > 0:
				say("pool %s: %d tenants wait for the pool to be created in %s", name, p.left, s.cfg.Target)
			case p.left > 0:
				line := fmt.Sprintf("pool %s: created in %s; %d restoring, %d queued", name, s.cfg.Target, running, queued)
				if queued > 0 && s.restores >= conc && !s.cancelled {
					line += fmt.Sprintf(", waiting for a free slot (%d of %d restores running, tenants.concurrency)", s.restores, conc)
				}
				say("%s", line)
			}
		}
	}
	if st.Done {
		say("done: %d available, %d failed, %d not recovered", st.Counts[lifeboat.TenantAvailable], st.Counts[lifeboat.TenantFailed], s.left)
	}
	return st
}

// batches0 counts the tenants in batches running.
func (s *Scheduler) batches0() int {
	n := 0
	for _, p := range s.pools {
		if p.kind != lifeboat.StrategyGeoReplicate {
			continue
		}
		for _, t := range p.order[p.head:] {
			if t.busy {
				n++
			}
		}
	}
	return n
}

func orNone(s string) string {
	if s == "" {
		return "none named"
	}
	return s
}
