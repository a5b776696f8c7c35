package postgres_test

import (
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-dr/lifeboat/driver/postgres"
)

// PostgreSQL (its own OS user) must never find lifeboat.conf unreadable
// while Lifeboat rewrites it, or a server starting at that instant fails:
// the fence of a stopped node raced the lab's heal that way. A reader with
// the postgres user's file-system identity opens the file while SetFence
// rewrites it again and again.
func TestSettingsNeverUnreadableToPostgres(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the file is written by root for the postgres user")
	}
	pu, err := user.Lookup("postgres")
	if err != nil {
		t.Skipf("no postgres user: %v", err)
	}
	uid, _ := strconv.Atoi(pu.Uid)
	gid, _ := strconv.Atoi(pu.Gid)
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} { // t.TempDir's are root's alone
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(base, "pg")
	if err := postgres.MkdirForPostgres(dir); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "lifeboat.conf")
	if err := os.WriteFile(conf, []byte("port = 5432\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := postgres.Chown(conf); err != nil {
		t.Fatal(err)
	}
	inst := &postgres.Instance{DataDir: dir}

	var stop atomic.Bool
	denied, reads := make(chan int, 1), make(chan int, 1)
	go func() {
		// This thread reads as the postgres user; it ends with the
		// goroutine (still locked), so the identity goes with it.
		runtime.LockOSThread()
		unix.Setfsgid(gid)
		unix.Setfsuid(uid)
		n, d := 0, 0
		for !stop.Load() {
			f, err := os.Open(conf)
			n++
			if errors.Is(err, os.ErrPermission) {
				d++
			} else if err == nil {
				f.Close()
			}
		}
		denied <- d
		reads <- n
	}()
	for i := range 3000 {
		if err := inst.SetFence(i%2 == 0); err != nil {
			stop.Store(true)
			t.Fatal(err)
		}
	}
	stop.Store(true)
	if d, n := <-denied, <-reads; d > 0 {
		t.Fatalf("the postgres user was refused lifeboat.conf %d times in %d reads while it was rewritten", d, n)
	}
}
