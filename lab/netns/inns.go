package netns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-dr/lifeboat"
)

// Do runs fn on an OS thread that has entered the region's namespace. A
// socket keeps the namespace it was created in, so listeners and
// connections opened by fn stay in the region after fn returns; fn must
// not hand work to other goroutines (they run on other threads) or resolve
// names (the resolver may).
func (n *Net) Do(region string, fn func() error) error {
	r, err := n.region(OpExec, region)
	if err != nil {
		return err
	}
	return n.do(r, fn)
}

func (n *Net) do(r *region, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is locked before it changes namespace, and unlocked
		// only once it is back: if going back fails the goroutine exits
		// locked and the runtime discards the thread.
		runtime.LockOSThread()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- lifeboat.Permanent(OpExec, r.name, fmt.Errorf("open this thread's network namespace: %w", err))
			return
		}
		defer home.Close()
		target, err := os.Open(nsPath(r.ns))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- lifeboat.Permanent(OpExec, r.name, fmt.Errorf("namespace %s of region %s is gone (was the lab network taken down?): %w", r.ns, r.name, err))
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- lifeboat.Permanent(OpExec, r.name, fmt.Errorf("enter namespace %s: %w (needs root)", r.ns, err))
			return
		}
		ferr := fn()
		if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("%w (and leaving namespace %s failed: %v)", ferr, r.ns, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Listen opens a listener inside the region. address must be a literal
// IP:port ("0.0.0.0:0", or the region's Addr).
func (n *Net) Listen(region, network, address string) (net.Listener, error) {
	if _, err := netip.ParseAddrPort(address); err != nil {
		return nil, lifeboat.Permanent(OpExec, region, fmt.Errorf("listen in a namespace needs a literal ip:port, not %q", address))
	}
	var l net.Listener
	err := n.Do(region, func() (err error) {
		l, err = net.Listen(network, address)
		return err
	})
	return l, err
}

// DialContext connects from inside the region. address must be a literal
// IP:port (no name resolution inside the namespace).
func (n *Net) DialContext(ctx context.Context, region, network, address string) (net.Conn, error) {
	if _, err := netip.ParseAddrPort(address); err != nil {
		return nil, lifeboat.Permanent(OpExec, region, fmt.Errorf("dial from a namespace needs a literal ip:port, not %q", address))
	}
	var c net.Conn
	err := n.Do(region, func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}
