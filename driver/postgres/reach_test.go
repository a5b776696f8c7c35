package postgres_test

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/driver/postgres"
	"github.com/lifeboat-dr/lifeboat/lab/wan"
)

// A node reached from another region through a WAN link is streamed from
// through that link after a switchover, so cutting the link cuts
// replication whichever way it flows.
func TestReplicationFollowsReachedFrom(t *testing.T) {
	ctx := timeout(t)
	p := newPair(t, nil)
	cfg := wan.DefaultConfig()
	cfg.Name, cfg.Upstream = "east-seen-from-west", p.east.Instance.Host+":"+itoa(p.east.Port)
	link, err := wan.Open(cfg)
	must(t, err)
	t.Cleanup(func() { link.Close() })
	e := p.cfg.Nodes[east]
	e.ReachedFrom = map[string]string{"west": link.Addr()}
	p.cfg.Nodes[east] = e
	d, err := postgres.New(p.cfg)
	must(t, err)

	must(t, d.Switchover(ctx, target(west, 2), target(east, 2)))
	conf, err := readFile(p.west.Dir + "/lifeboat.conf")
	must(t, err)
	_, port, _ := strings.Cut(link.Addr(), ":")
	if !strings.Contains(conf, "port="+port) {
		t.Fatalf("west streams from east outside the link:\n%s", conf)
	}
	eventually(t, ctx, "west streams from east", func() (bool, error) {
		ns, err := d.Inspect(ctx, target(west, 2))
		return ns.ReplicationState == "streaming", err
	})
	must(t, link.Down())
	eventually(t, ctx, "west's replication stops when the link is down", func() (bool, error) {
		ns, err := d.Inspect(ctx, target(west, 2))
		return ns.ReplicationState != "streaming", err
	})
	must(t, link.Heal())
}

func TestReachedFromMustBeHostPort(t *testing.T) {
	cfg := postgres.DefaultConfig()
	cfg.User, cfg.StateDir = "u", t.TempDir()
	cfg.Nodes = map[string]postgres.Node{west: {Region: "west", Host: "127.0.0.1", Port: 5432, ReachedFrom: map[string]string{"east": "nowhere"}}}
	err := postgres.ValidateConfig(cfg)
	if err == nil || !strings.Contains(err.Error(), `reached-from east is "nowhere", not host:port`) {
		t.Fatalf("got %v", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}
