package lab

import (
	"context"
	"log/slog"
	"os"

	"github.com/lifeboat-dr/lifeboat/examples/shop/shop"
)

// RunShop runs one shop instance from its environment (PORT, DATABASE_URL,
// LIFEBOAT_REGION, as driver/process sets them) until ctx ends: what the
// lab's recipe command 'lifeboat lab shop' runs.
func RunShop(ctx context.Context) error {
	c, err := shop.FromEnv(os.Getenv)
	if err != nil {
		return err
	}
	c.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	return shop.Run(ctx, c, nil)
}
