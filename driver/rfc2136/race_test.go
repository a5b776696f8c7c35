package rfc2136

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/rfc2136/bindtest"
	"github.com/miekg/dns"
)

func testDriver(t *testing.T, srv *bindtest.Server) *Driver {
	t.Helper()
	c := DefaultConfig()
	c.Server, c.Zone = srv.Addr, srv.Zone
	c.TSIG = TSIGKey{Name: srv.KeyName, Algorithm: "hmac-sha256", Secret: srv.Secret}
	c.Names = map[string]map[string][]netip.Addr{"www": {
		"west": {netip.MustParseAddr("10.0.1.1")},
		"east": {netip.MustParseAddr("10.0.2.1")},
	}}
	d, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func tgt(region string, epoch uint64) lifeboat.Target {
	return lifeboat.Target{Region: region, Resource: "shop-storefront-www", Epoch: epoch}
}

// An older writer that read the records, then lost the race to a newer
// epoch, is stopped by its update's prerequisites and told it is stale.
func TestOlderWriterLosesTheRace(t *testing.T) {
	ctx := context.Background()
	srv := bindtest.Start(t, bindtest.Options{})
	old, newer := testDriver(t, srv), testDriver(t, srv)
	www := []string{"www.shop.example.test."}

	s, err := old.dial(ctx, lifeboat.OpTrafficSwitch, tgt("west", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	seen, err := s.readAll(ctx, www) // epoch 1 reads: nothing there yet
	if err != nil {
		t.Fatal(err)
	}
	if err := newer.Switch(ctx, tgt("east", 2), nil); err != nil {
		t.Fatal(err)
	}
	serial, _ := srv.Serial(ctx)
	err = s.update(ctx, tgt("west", 1), seen)
	if !errors.Is(err, lifeboat.ErrStaleEpoch) || lifeboat.IsRetryable(err) {
		t.Fatalf("older writer's update: %v; want a permanent stale epoch", err)
	}
	if now, _ := srv.Serial(ctx); now != serial {
		t.Errorf("the older writer changed the zone: serial %d → %d", serial, now)
	}
	if r, err := newer.Status(ctx, tgt("", 0), nil); err != nil || r.Region != "east" || r.Epoch != 2 {
		t.Errorf("status = %+v, %v; want east at epoch 2", r, err)
	}

	// Someone edits the records by hand between read and update: not
	// stale, so worth a retry, which then repairs them.
	seen, err = s.readAll(ctx, www)
	if err != nil {
		t.Fatal(err)
	}
	hand := new(dns.Msg)
	hand.SetUpdate(srv.Zone)
	rr, _ := dns.NewRR("www.shop.example.test. 30 IN A 192.0.2.7")
	hand.Insert([]dns.RR{rr})
	if r, err := s.exchange(ctx, hand); err != nil || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("hand edit: %v %v", r, err)
	}
	err = s.update(ctx, tgt("west", 3), seen)
	if err == nil || !lifeboat.IsRetryable(err) || errors.Is(err, lifeboat.ErrStaleEpoch) {
		t.Fatalf("update after a hand edit: %v; want a retryable error", err)
	}
	t.Logf("raced: %v", err)
	if err := old.Switch(ctx, tgt("west", 3), nil); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if r, err := old.Status(ctx, tgt("", 0), nil); err != nil || r.Region != "west" || r.Epoch != 3 || len(r.Answers["www.shop.example.test."]) != 1 {
		t.Errorf("status after retry = %+v, %v; want west at epoch 3 with one address", r, err)
	}
}

// A cancelled call returns at once, retryable.
func TestCancelledCallIsRetryable(t *testing.T) {
	srv := bindtest.Start(t, bindtest.Options{})
	d := testDriver(t, srv)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := d.Switch(ctx, tgt("west", 1), nil)
	if err == nil || !lifeboat.IsRetryable(err) {
		t.Fatalf("cancelled switch: %v; want retryable", err)
	}
}
