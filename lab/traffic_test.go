package lab

import (
	"bufio"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

// echo serves a line-based echo that prefixes each answer with name.
func echo(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(name + ":" + line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func ask(c net.Conn, r *bufio.Reader) (string, error) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("hi\n")); err != nil {
		return "", err
	}
	return r.ReadString('\n')
}

func TestFrontSwitch(t *testing.T) {
	f, err := OpenFront("127.0.0.1:0", map[string]string{West: echo(t, West), East: echo(t, East)})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx := context.Background()
	target := func(region string, epoch uint64) lifeboat.Target {
		return lifeboat.Target{Service: Service, Unit: Unit, Component: WWW, Region: region, Resource: "shop-storefront-www", Epoch: epoch}
	}
	names := []string{HostName}

	// Before any switch the front routes nowhere.
	if r, _ := f.Status(ctx, target("", 0), names); r.Region != "" {
		t.Fatalf("a new front routes to %q", r.Region)
	}

	if err := f.Switch(ctx, target(West, 1), names); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", f.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if got, err := ask(c, r); err != nil || got != "west:hi\n" {
		t.Fatalf("through the front: %q, %v; want west", got, err)
	}

	// Switching to east closes the connection to west and routes anew.
	if err := f.Switch(ctx, target(East, 2), names); err != nil {
		t.Fatal(err)
	}
	if got, err := ask(c, r); err == nil {
		t.Fatalf("a connection to west survived the switch to east: %q", got)
	}
	c2, err := net.Dial("tcp", f.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got, err := ask(c2, bufio.NewReader(c2)); err != nil || got != "east:hi\n" {
		t.Fatalf("after the switch: %q, %v; want east", got, err)
	}
	rt, _ := f.Status(ctx, target(East, 2), names)
	if rt.Region != East || rt.Epoch != 2 || rt.Since.IsZero() || len(rt.Answers[HostName]) == 0 {
		t.Fatalf("status after the switch: %+v", rt)
	}

	// A stale epoch is refused and changes nothing; a retry is done.
	if err := f.Switch(ctx, target(West, 1), names); !errors.Is(err, lifeboat.ErrStaleEpoch) {
		t.Fatalf("switch at a stale epoch: %v, want ErrStaleEpoch", err)
	}
	if err := f.Switch(ctx, target(East, 2), names); err != nil {
		t.Fatalf("the same switch again: %v", err)
	}
	if region, epoch := f.Route(); region != East || epoch != 2 {
		t.Fatalf("route %s@%d, want east@2", region, epoch)
	}
	if err := f.Switch(ctx, target("north", 3), names); err == nil || lifeboat.IsRetryable(err) {
		t.Fatalf("switch to an unknown region: %v, want a permanent error", err)
	}
}
