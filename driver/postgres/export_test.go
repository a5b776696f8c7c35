package postgres

import (
	"context"
	"time"
)

// SyncPrimary is the primary WatchSync would look at now (tests).
func (d *Driver) SyncPrimary(ctx context.Context, database string) (string, error) {
	v, err := d.syncView(ctx, database, 5*time.Second)
	return v.name, err
}
