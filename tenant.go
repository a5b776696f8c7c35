package lifeboat

import "time"

// TenantState is where a tenant stands in a recovery.
type TenantState string

const (
	// TenantAvailable: its data can be reached where Region says.
	TenantAvailable TenantState = "available"
	// TenantQueued: waiting for its turn to be made available (a batch of
	// its geo-replicated pool, or a geo-restore).
	TenantQueued TenantState = "queued"
	// TenantRestoring: being restored from its latest backup.
	TenantRestoring TenantState = "restoring"
	// TenantFailed: its recovery failed; Reason says why. It is retried
	// by the next recovery, or moved by hand.
	TenantFailed TenantState = "failed"
	// TenantReadOnly: a copy kept read-only during failback, until its
	// changes are copied home.
	TenantReadOnly TenantState = "read-only"
)

// Tenant is one customer's entry in the management catalog: where its
// data lives now, and how it stands.
type Tenant struct {
	// Name is the tenant's id; its database (or schema) is named after it.
	Name string `json:"name"`
	Tier string `json:"tier"`
	// Pool and Region are where its primary copy is: the pool, and the
	// region whose copy of the pool serves it.
	Pool   string `json:"pool"`
	Region string `json:"region"`
	// Epoch is the service epoch at which the tenant was last placed or
	// moved; a move at an older epoch is refused (a fencing token).
	Epoch  uint64      `json:"epoch"`
	State  TenantState `json:"state"`
	Reason string      `json:"reason,omitempty"`
	// Created and Updated are when the entry was created and last changed;
	// Recovered is when it was last made available in another region
	// (what failback compares changes against).
	Created   time.Time `json:"created"`
	Updated   time.Time `json:"updated"`
	Recovered time.Time `json:"recovered,omitzero"`
}

// TenantChange is one change applied to many tenants at once (a batch):
// the fields set are written, in one transaction, to every tenant named.
type TenantChange struct {
	State  TenantState `json:"state,omitempty"`
	Reason string      `json:"reason,omitempty"`
	// Region and Epoch move the tenants (both set, or neither): a change
	// at an epoch older than a tenant's is refused for that tenant.
	Region string `json:"region,omitempty"`
	Epoch  uint64 `json:"epoch,omitempty"`
	// Recovered, if set, records when the tenants were made available in
	// another region.
	Recovered time.Time `json:"recovered,omitzero"`
}
