package postgres

import (
	"context"
	"fmt"
	"net"
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

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port on 127.0.0.1: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
