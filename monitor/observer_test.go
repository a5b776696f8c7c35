package monitor

import (
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// viewLog records what an observer publishes.
type viewLog struct {
	mu    sync.Mutex
	views []View
}

func (l *viewLog) publish(v View) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.views = append(l.views, v)
}

// find returns the published views of region that match f.
func (l *viewLog) find(region string, f func(View) bool) []View {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []View
	for _, v := range l.views {
		if v.Region == region && f(v) {
			out = append(out, v)
		}
	}
	return out
}

func (l *viewLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.views)
}

func httpTarget(region, component string, critical bool, url string) Target {
	c := fastProbe(ProbeHTTP, url)
	c.Timeout = 200 * time.Millisecond
	return Target{Region: region, Component: component, Critical: critical, Probe: c}
}

func TestObserver(t *testing.T) {
	westWeb, westCache, eastWeb, eastCache := &switchHandler{}, &switchHandler{}, &switchHandler{}, &switchHandler{}
	srvs := map[*switchHandler]*httptest.Server{}
	for _, h := range []*switchHandler{westWeb, westCache, eastWeb, eastCache} {
		h.mode.Store("ok")
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		srvs[h] = srv
	}
	log := &viewLog{}
	c := DefaultObserverConfig()
	c.Region, c.Publish, c.Interval = "central", log.publish, 20*time.Millisecond
	c.Regions = []string{"west", "east", "central"}
	c.Targets = []Target{
		httpTarget("west", "shop.web", true, srvs[westWeb].URL),
		httpTarget("west", "shop.cache", false, srvs[westCache].URL),
		httpTarget("east", "shop.web", true, srvs[eastWeb].URL),
		httpTarget("east", "shop.cache", false, srvs[eastCache].URL),
	}
	o, err := StartObserver(c)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()

	// Every region is published, central too (it has no target).
	for _, r := range []string{"west", "east", "central"} {
		probeWaitFor(t, r+" published", func() bool { return len(log.find(r, func(View) bool { return true })) > 0 })
	}
	probeWaitFor(t, "every target up", func() bool {
		for _, s := range o.Targets() {
			if s.Verdict.Health != HealthUp {
				return false
			}
		}
		return true
	})
	start := o.Views()

	// A non-critical target down: shown, not failing.
	eastCache.mode.Store("500")
	probeWaitFor(t, "east reason names the non-critical target", func() bool {
		return len(log.find("east", func(v View) bool {
			return !v.Failing && strings.Contains(v.Reason, "not critical: east/shop.cache/http down")
		})) > 0
	})

	// A critical target down: the region fails, with the target named.
	westWeb.mode.Store("500")
	probeWaitFor(t, "west failing", func() bool {
		return len(log.find("west", func(v View) bool { return v.Failing })) > 0
	})
	fail := log.find("west", func(v View) bool { return v.Failing })[0]
	if fail.Observer != "central" || !strings.Contains(fail.Reason, "west/shop.web/http down") || !strings.Contains(fail.Reason, "500") {
		t.Fatalf("failing view %+v: want observer central and a reason naming west/shop.web/http and the 500", fail)
	}
	res, ok := o.Results("west/shop.web/http")
	if !ok || len(res) == 0 {
		t.Fatalf("Results(west/shop.web/http) = %v, %v", res, ok)
	}
	// Since is when the target went down, as the prober saw it.
	var pv ProbeVerdict
	for _, s := range o.Targets() {
		if s.Target.Name() == "west/shop.web/http" {
			pv = s.Verdict
		}
	}
	if pv.Health != HealthDown || !fail.Since.Equal(pv.Since) {
		t.Fatalf("failing view Since %s, target verdict %+v: want the verdict's Since", fail.Since, pv)
	}
	for _, v := range start {
		if v.Region == "west" && !fail.Since.After(v.Since) {
			t.Fatalf("failing Since %s not after the first Since %s", fail.Since, v.Since)
		}
	}
	// Views are published again every Interval while nothing changes.
	probeWaitFor(t, "west republished while failing", func() bool {
		return len(log.find("west", func(v View) bool { return v.Failing && v.Since.Equal(fail.Since) && v.At.After(fail.At) })) >= 3
	})
	// East and central are unaffected.
	for _, v := range o.Views() {
		if v.Region != "west" && v.Failing {
			t.Fatalf("%s failing: %+v", v.Region, v)
		}
	}

	westWeb.mode.Store("ok")
	probeWaitFor(t, "west back", func() bool {
		return len(log.find("west", func(v View) bool { return !v.Failing && v.Since.After(fail.Since) })) > 0
	})
	if _, ok := o.Results("nowhere/x.y/http"); ok {
		t.Fatal("Results of an unknown target: ok")
	}

	o.Close()
	n := log.len()
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	for _, fn := range []string{"monitor.(*Prober).Run", "monitor.(*Observer).loop"} {
		if strings.Contains(stacks, fn) {
			t.Fatalf("%s still running after Close", fn)
		}
	}
	if log.len() != n {
		t.Fatal("published after Close")
	}
	o.Close() // twice is fine
}

func TestObserverConfig(t *testing.T) {
	c := DefaultObserverConfig()
	tg := httpTarget("west", "shop.web", true, "http://127.0.0.1:1/")
	c.Targets = []Target{tg, tg, {Region: "east", Probe: ProbeConfig{Kind: "icmp"}}}
	_, err := StartObserver(c)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"no Region", "listed twice", "no Region or Component", "icmp"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
