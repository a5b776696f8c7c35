// Package chromium starts headless Chromium the one way Lifeboat's tests
// and benches may: with flags that keep it from contacting anything but
// the page they load on loopback (no background networking, updates,
// sync or QUIC).
package chromium

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/chromedp/chromedp"
)

// Flags are the switches every Chromium run gets, besides headless: none
// of them may be dropped (the network rule: loopback only).
var Flags = []string{"disable-background-networking", "disable-component-update", "disable-sync", "no-first-run", "disable-quic"}

// Path is the Chromium binary itself: Debian's /usr/bin/chromium is a
// script that adds flags and Google API keys of its own.
func Path() (string, error) {
	if _, err := os.Stat("/usr/lib/chromium/chromium"); err == nil {
		return "/usr/lib/chromium/chromium", nil
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p, nil
	}
	return "", errors.New("chromium is not installed: run scripts/deps.sh (Debian package chromium)")
}

// TestPath is Path for a test: without Chromium the test is skipped, but
// under CI (CI set) it fails, since scripts/deps.sh installs it there.
func TestPath(t testing.TB) string {
	t.Helper()
	p, err := Path()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return p
}

// Start starts headless Chromium (bin, a profile in dataDir) with Flags,
// without the sandbox when root, and a width×height viewport. cancel ends
// the process.
func Start(ctx context.Context, bin, dataDir string, width, height int64) (context.Context, context.CancelFunc, error) {
	opts := []chromedp.ExecAllocatorOption{chromedp.ExecPath(bin), chromedp.Flag("headless", true), chromedp.UserDataDir(dataDir)}
	for _, f := range Flags {
		opts = append(opts, chromedp.Flag(f, true))
	}
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelCtx := chromedp.NewContext(actx)
	cancel := func() { cancelCtx(); cancelAlloc() }
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(width, height)); err != nil {
		cancel()
		return nil, nil, fmt.Errorf("starting chromium %s: %w", bin, err)
	}
	return bctx, cancel, nil
}
