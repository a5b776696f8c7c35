package gate

import (
	"context"
	"testing"

	"github.com/lifeboat-dr/lifeboat"
)

// BenchmarkGate measures what the gate adds: per query on an established
// session (one round trip, SELECT 1), and per connection set-up (TCP,
// startup, SCRAM authentication, ReadyForQuery, close), direct to
// PostgreSQL and through the gate, on loopback.
//
//	go test -run '^$' -bench . -benchtime 2000x ./tenant/gate/
func BenchmarkGate(b *testing.B) {
	l := startLab(b)
	cat := newCatalog()
	cat.put(l.tenant("acme", "east", lifeboat.TenantAvailable))
	g := startGate(b, testConfig(), cat, nil)
	targets := []struct{ name, addr string }{{"direct", l.addr(l.east)}, {"gate", g.Addr()}}
	for _, tg := range targets {
		b.Run("query/"+tg.name, func(b *testing.B) {
			c := mustConnect(b, tg.addr, "acme")
			ctx := context.Background()
			var n int
			for b.Loop() {
				if err := c.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	for _, tg := range targets {
		b.Run("connect/"+tg.name, func(b *testing.B) {
			ctx := context.Background()
			for b.Loop() {
				c, err := connect(b, tg.addr, "acme")
				if err != nil {
					b.Fatal(err)
				}
				c.Close(ctx)
			}
		})
	}
}
