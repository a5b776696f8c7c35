package postgres

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
)

// StartPrimary creates a new cluster in i.DataDir (initdb) and starts it as
// a primary ready for streaming replication and pg_rewind.
func StartPrimary(ctx context.Context, i *Instance, o InitOptions) error {
	if err := i.Init(ctx, o); err != nil {
		return err
	}
	return i.Start(ctx)
}

// StartStandby fills i.DataDir with a base backup of the primary at
// primaryConninfo and starts it streaming from there.
func StartStandby(ctx context.Context, i *Instance, primaryConninfo string) error {
	if err := i.BaseBackup(ctx, primaryConninfo); err != nil {
		return err
	}
	if err := i.Follow(primaryConninfo); err != nil {
		return err
	}
	return i.Start(ctx)
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on now,
// picked at random below the kernel's ephemeral ports (and below the labs'
// blocks, from 20000): a server stopped and started again on it must not
// find it taken meanwhile as the local port of some outgoing connection,
// which a port the kernel handed out from the ephemeral range can be (CI:
// "could not bind … Address already in use" on a restart).
func FreePort() (int, error) {
	for range 200 {
		p := 10000 + rand.IntN(10000)
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))); err == nil {
			l.Close()
			return p, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port on 127.0.0.1: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
