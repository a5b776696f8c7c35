package dns

import (
	"context"
	"slices"
	"testing"

	"github.com/lifeboat-dr/lifeboat"
)

// Ask, over the wire, says what Status says in process.
func TestAskAgreesWithStatus(t *testing.T) {
	s := start(t, testConfig())
	must(t, s.SetName(www()))
	ctx := context.Background()
	tg := lifeboat.Target{Resource: "shop-www", Region: "east", Epoch: 7}
	names := []string{"www." + zone}
	must(t, s.Switch(ctx, tg, names))

	want, err := s.Status(ctx, tg, names)
	must(t, err)
	got, err := Ask(ctx, s.Addr(), tg, names)
	must(t, err)
	if got.Region != "east" || got.Epoch != 7 || !got.Since.Equal(want.Since.Truncate(1e9)) {
		t.Errorf("Ask: region %q epoch %d since %s; want east, 7, %s", got.Region, got.Epoch, got.Since, want.Since)
	}
	g, w := got.Answers[names[0]], want.Answers[names[0]]
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		t.Errorf("Ask answers %v; Status answers %v", g, w)
	}
	if _, err := Ask(ctx, s.Addr(), tg, []string{"nope.example.org"}); err == nil || lifeboat.IsRetryable(err) {
		t.Errorf("asking for a name outside the zone: %v; want a permanent error", err)
	}
}
