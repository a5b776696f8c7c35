// Command shop is Lifeboat's sample workload: an order service that runs in
// every region. Environment: PORT (listens on 127.0.0.1:$PORT), DATABASE_URL
// (this region's PostgreSQL), LIFEBOAT_REGION. See package shop.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/lifeboat-dr/lifeboat/examples/shop/shop"
)

func main() {
	c, err := shop.FromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	c.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := shop.Run(ctx, c, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
