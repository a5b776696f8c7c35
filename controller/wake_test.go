package controller

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/monitor"
	"github.com/lifeboat-dr/lifeboat/store"
)

// wakeQuorum streams views, says when a lease is gone and whether this
// controller's own lease is alive, as the test says.
type wakeQuorum struct {
	Quorum
	events chan store.ViewEvent
	gone   chan struct{}
	alive  atomic.Bool
}

func (q *wakeQuorum) WatchViews(ctx context.Context) (map[string]map[string][]byte, <-chan store.ViewEvent, error) {
	return nil, q.events, nil
}
func (q *wakeQuorum) ActiveGone(ctx context.Context, region string) <-chan struct{} { return q.gone }
func (q *wakeQuorum) Alive(time.Time) bool                                          { return q.alive.Load() }

func woken(c *Controller) bool {
	select {
	case <-c.wake:
		return true
	case <-time.After(2 * time.Second):
		return false
	}
}

func notWoken(c *Controller) bool {
	select {
	case <-c.wake:
		return false
	default:
		return true
	}
}

func view(t *testing.T, region string, failing bool) store.ViewEvent {
	b, err := json.Marshal(monitor.View{Observer: "central", Region: region, Failing: failing})
	if err != nil {
		t.Fatal(err)
	}
	return store.ViewEvent{Region: "central", Key: "view." + region, Value: b}
}

// The controller decides at once on the events that may change its
// decision, and not on those that cannot.
func TestEventsWakeTheController(t *testing.T) {
	q := &wakeQuorum{events: make(chan store.ViewEvent), gone: make(chan struct{})}
	q.alive.Store(true)
	c := &Controller{c: Config{Quorum: q, Tick: time.Hour, Now: time.Now}, policy: monitor.Policy{Lease: time.Second}, wake: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.watchViews(ctx)

	q.events <- view(t, "west", false) // first sight: nothing changed
	q.events <- view(t, "west", false) // republished, same verdict
	q.events <- store.ViewEvent{Region: "central", Key: "controller", Value: []byte(`{}`)}
	q.events <- view(t, "east", false)
	if !notWoken(c) {
		t.Fatal("woken by views whose verdict did not change")
	}
	q.events <- view(t, "west", true)
	if !woken(c) {
		t.Fatal("an observer now sees west failing, and the controller was not woken")
	}
	q.events <- store.ViewEvent{Region: "central", Key: "view.west"} // its lease lapsed
	if !woken(c) {
		t.Fatal("an observer's view vanished, and the controller was not woken")
	}

	c.awaitLease(ctx, "west", 3)
	c.awaitLease(ctx, "west", 3) // one watch per region and epoch
	close(q.gone)
	if !woken(c) {
		t.Fatal("west's lease is gone, and the controller was not woken")
	}

	go c.watchQuorum(ctx)
	q.alive.Store(false)
	if !woken(c) {
		t.Fatal("this controller's quorum lapsed, and it was not woken to fence")
	}
}
