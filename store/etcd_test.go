package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Child mode: the test binary re-executed as a lifeboat process that
// embeds the member, does some work, says "ready" and waits to be killed.
const childEnv = "LIFEBOAT_STORE_CHILD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		if err := child(dir); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		select {} // hold the member, the lease and the lock until SIGKILL
	}
	os.Exit(m.Run())
}

const childRecords = 100

func child(dir string) error {
	ctx := context.Background()
	s, err := Open(ctx, Options{Dir: dir, Service: "shop"})
	if err != nil {
		return err
	}
	if _, err := s.Init(ctx, testState(1)); err != nil {
		return err
	}
	if err := s.Begin(ctx, testRun("r-crash", t0)); err != nil {
		return err
	}
	if _, err := s.Own(ctx, "r-crash"); err != nil {
		return err
	}
	for i := 1; i <= childRecords; i++ {
		var st *lifeboat.State
		if i == childRecords {
			st = testState(9)
			st.Run = "r-crash"
		}
		if _, err := s.Append(ctx, lifeboat.Record{Run: "r-crash", Step: fmt.Sprintf("s%d", i), Kind: lifeboat.RecDone, At: t0}, st); err != nil {
			return err
		}
	}
	fmt.Println("ready")
	return nil
}

// Killing the process that embeds the member loses nothing it wrote, and
// a new process takes the run over at once (the owner's pid is gone).
func TestEtcdSurvivesSIGKILL(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child said %q, %v", line, err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if _, err := os.Stat(filepath.Join(dir, endpointFile)); err != nil {
		t.Fatalf("the killed child's endpoint file should be left behind to exercise recovery: %v", err)
	}

	ctx := context.Background()
	s, err := Open(ctx, Options{Dir: dir, Service: "shop"})
	if err != nil {
		t.Fatalf("Open after SIGKILL: %v", err)
	}
	defer s.Close()
	st, err := s.State(ctx)
	if err != nil || st.Epoch != 9 || st.Run != "r-crash" {
		t.Fatalf("state after SIGKILL = %+v, %v; want epoch 9 and run r-crash", st, err)
	}
	j, err := s.Journal(ctx, "r-crash")
	if err != nil || len(j) != childRecords {
		t.Fatalf("journal after SIGKILL: %d records, %v; want %d", len(j), err, childRecords)
	}
	wantErr(t, s.Begin(ctx, testRun("r-next", t0)), lifeboat.ErrRunInProgress, false)
	// The dead child's lease was restored with the member; Own sees its
	// pid is gone and takes over without waiting for the TTL.
	release, err := s.Own(ctx, "r-crash")
	if err != nil {
		t.Fatalf("Own after the owner was killed: %v", err)
	}
	release()
	// Appends go on after the last record.
	if seq, err := s.Append(ctx, lifeboat.Record{Run: "r-crash", Kind: lifeboat.RecStart, At: t0}, nil); err != nil || seq != childRecords+1 {
		t.Fatalf("Append after resume = %d, %v; want %d", seq, err, childRecords+1)
	}
}

// A second Open on a Dir whose member is live connects to it as a client:
// that is how `lifeboat cancel` reaches a running `lifeboat failover`.
func TestEtcdSecondOpenIsClient(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, err := Open(ctx, Options{Dir: dir, Service: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ep, err := os.ReadFile(filepath.Join(dir, endpointFile))
	if err != nil || !strings.HasPrefix(string(ep), "http://127.0.0.1:") {
		t.Fatalf("endpoint file = %q, %v; want a loopback URL", ep, err)
	}
	a.Init(ctx, testState(3))
	a.Begin(ctx, testRun("r1", t0))
	releaseA, err := a.Own(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	watch, err := a.WatchCancel(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}

	b, err := Open(ctx, Options{Dir: dir, Service: "shop"})
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	if inner(b).onClose != nil {
		t.Fatal("second Open embedded a member of its own")
	}
	if st, err := b.State(ctx); err != nil || st.Epoch != 3 || st.Run != "r1" {
		t.Fatalf("second store sees state %+v, %v", st, err)
	}
	_, err = b.Own(ctx, "r1")
	wantErr(t, err, lifeboat.ErrRunOwned, false)
	if !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("ErrRunOwned does not say which pid holds the run: %v", err)
	}
	if err := b.RequestCancel(ctx, "r1", "bob@second-terminal"); err != nil {
		t.Fatal(err)
	}
	if by := <-watch; by != "bob@second-terminal" {
		t.Fatalf("owner's watch got %q", by)
	}
	// Closing the client leaves the member and its endpoint alone.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, endpointFile)); err != nil {
		t.Fatalf("a client's Close removed the member's endpoint file: %v", err)
	}
	if _, err := a.State(ctx); err != nil {
		t.Fatalf("the member stopped when a client closed: %v", err)
	}
	releaseA()
	// Another service shares the member but not the keys.
	c, err := Open(ctx, Options{Dir: dir, Service: "billing"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.State(ctx)
	wantErr(t, err, lifeboat.ErrNoState, false)
}

// Data written before Close is there after the next Open; Close removes
// the endpoint file and unlocks the dir.
func TestEtcdReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, err := Open(ctx, Options{Dir: dir, Service: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	a.Init(ctx, testState(1))
	a.Begin(ctx, testRun("r1", t0))
	st := testState(4)
	st.Run = "r1"
	for i := range 10 {
		a.Append(ctx, lifeboat.Record{Run: "r1", Step: fmt.Sprint(i), Kind: lifeboat.RecDone, At: t0}, st)
	}
	a.RequestCancel(ctx, "r1", "alice")
	if _, err := a.Own(ctx, "r1"); err != nil { // not released: Close must give it up
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, endpointFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("endpoint file after Close: %v", err)
	}

	b, err := Open(ctx, Options{Dir: dir, Service: "shop"})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer b.Close()
	if inner(b).onClose == nil {
		t.Fatal("reopen did not embed the member")
	}
	if got, err := b.State(ctx); err != nil || got.Epoch != 4 || got.Run != "r1" {
		t.Fatalf("state after reopen = %+v, %v", got, err)
	}
	if j, err := b.Journal(ctx, "r1"); err != nil || len(j) != 10 || j[9].Step != "9" {
		t.Fatalf("journal after reopen: %d records, %v", len(j), err)
	}
	w, err := b.WatchCancel(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if by := <-w; by != "alice" {
		t.Fatalf("cancel request after reopen: %q", by)
	}
	release, err := b.Own(ctx, "r1")
	if err != nil {
		t.Fatalf("Own after reopen: %v (Close should have released the old claim)", err)
	}
	release()
}

// A dir locked by a process whose member does not answer fails Open with
// an error that says so, instead of hanging in bbolt's flock.
func TestEtcdLockedDir(t *testing.T) {
	dir := t.TempDir()
	lock, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	lock.WriteString("lifeboat pid 4242 on elsewhere\n")
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, endpointFile), []byte("http://127.0.0.1:1\n"), 0o600)
	defer func(d time.Duration) { lockedWait = d }(lockedWait)
	lockedWait = 200 * time.Millisecond

	_, err = Open(context.Background(), Options{Dir: dir, Service: "shop"})
	if err == nil {
		t.Fatal("Open of a locked dir succeeded")
	}
	for _, want := range []string{"locked by lifeboat pid 4242 on elsewhere", "does not answer", "endpoint file says http://127.0.0.1:1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{{Dir: "x"}, {Service: "shop"}, {Service: "a/b", Dir: "x"}, {Service: "shop", Endpoints: []string{" "}}} {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v: no error", o)
		}
		if _, err := Open(context.Background(), o); err == nil || lifeboat.IsRetryable(err) {
			t.Errorf("Open(%+v) = %v, want a permanent error", o, err)
		}
	}
	if err := DefaultOptions("shop").Validate(); err != nil {
		t.Error(err)
	}
}

// An external cluster that does not answer fails Open with a retryable
// error naming it (127.0.0.1:1 refuses connections).
func TestEtcdEndpointsDown(t *testing.T) {
	_, err := Open(context.Background(), Options{Service: "shop", Endpoints: []string{"http://127.0.0.1:1"}})
	if err == nil || !lifeboat.IsRetryable(err) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("Open of a dead cluster = %v", err)
	}
}

// A stale endpoint file that points at the live member of another dir is
// not followed: this dir gets its own member.
func TestEtcdStaleEndpointOfOtherDir(t *testing.T) {
	ctx := context.Background()
	other := t.TempDir()
	a, err := Open(ctx, Options{Dir: other, Service: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.Init(ctx, testState(7))
	ep, _ := os.ReadFile(filepath.Join(other, endpointFile))

	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, endpointFile), ep, 0o600)
	b, err := Open(ctx, Options{Dir: dir, Service: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if inner(b).onClose == nil {
		t.Fatal("Open joined the member of another dir")
	}
	_, err = b.State(ctx)
	wantErr(t, err, lifeboat.ErrNoState, false)
}

// A process whose seq allocator is behind (another process appended to the
// run meanwhile) never overwrites a record: it moves past the last one.
func TestEtcdAppendAfterAnotherProcess(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, err := Open(ctx, Options{Dir: dir, Service: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.Init(ctx, testState(1))
	a.Begin(ctx, testRun("r1", t0))
	b, err := Open(ctx, Options{Dir: dir, Service: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	app := func(s lifeboat.Store, step string) uint64 {
		t.Helper()
		seq, err := s.Append(ctx, lifeboat.Record{Run: "r1", Step: step, Kind: lifeboat.RecStart, At: t0}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
	for _, s := range []lifeboat.Store{a, a, a, b, b, a} {
		app(s, "x")
	}
	if seq := app(a, "last"); seq != 7 {
		t.Fatalf("seq = %d, want 7", seq)
	}
	j, _ := b.Journal(ctx, "r1")
	for i, rec := range j {
		if rec.Seq != uint64(i+1) {
			t.Fatalf("journal record %d has seq %d", i, rec.Seq)
		}
	}
	if len(j) != 7 || j[6].Step != "last" {
		t.Fatalf("journal = %+v", j)
	}
}

// An owner on another host is not taken over while its lease lives, even
// if a process with its pid is not running here; when its lease goes (it
// died and the TTL passed), the run can be owned.
func TestEtcdOwnerOnAnotherHost(t *testing.T) {
	ctx := context.Background()
	s := inner(openEtcd(t))
	s.Init(ctx, testState(1))
	s.Begin(ctx, testRun("r1", t0))
	lease, err := s.cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	other := owner{Host: "east-controller", PID: 999999, BootID: s.me.BootID, Lease: int64(lease.ID), Since: t0}
	b, _ := encode(opOwn, "owner", other)
	if _, err := s.cli.Put(ctx, s.k.own("r1"), string(b), clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	_, err = s.Own(ctx, "r1")
	wantErr(t, err, lifeboat.ErrRunOwned, false)
	if !strings.Contains(err.Error(), "pid 999999 on east-controller") {
		t.Errorf("error does not name the owner: %v", err)
	}
	if _, err := s.cli.Revoke(ctx, lease.ID); err != nil { // what the TTL does when the owner dies
		t.Fatal(err)
	}
	release, err := s.Own(ctx, "r1")
	if err != nil {
		t.Fatalf("Own after the other owner's lease went: %v", err)
	}
	release()
}

// With Endpoints the same store runs on an external cluster (here: a
// member embedded by another store) and embeds nothing.
func TestEtcdEndpoints(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, err := Open(ctx, Options{Dir: dir, Service: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.Init(ctx, testState(5))
	ep, _ := os.ReadFile(filepath.Join(dir, endpointFile))
	b, err := Open(ctx, Options{Endpoints: []string{strings.TrimSpace(string(ep))}, Service: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if inner(b).onClose != nil {
		t.Fatal("Open with endpoints embedded a member")
	}
	if st, err := b.State(ctx); err != nil || st.Epoch != 5 {
		t.Fatalf("State through endpoints = %+v, %v", st, err)
	}
}

// inner returns the etcd store behind a follower.
func inner(s lifeboat.Store) *etcdStore {
	if f, ok := s.(*follower); ok {
		return f.cur().(*etcdStore)
	}
	return s.(*etcdStore)
}

// When the process that embeds the member exits, a process that joined it
// (lifeboat cancel waiting for a failover to clean up) opens the store
// again, embedding the member itself, instead of waiting forever.
func TestFollowerOutlivesTheMember(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, err := Open(ctx, Options{Dir: dir, Service: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	a.Init(ctx, testState(3))
	a.Begin(ctx, testRun("r1", t0))
	b, err := Open(ctx, Options{Dir: dir, Service: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if inner(b).onClose != nil {
		t.Fatal("second Open embedded a member of its own")
	}
	old := followCallTimeout
	followCallTimeout = 500 * time.Millisecond
	defer func() { followCallTimeout = old }()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := b.Run(ctx, "r1")
	if err != nil {
		t.Fatalf("after the member's process closed it: %v", err)
	}
	if r.ID != "r1" {
		t.Fatalf("run %q", r.ID)
	}
	if inner(b).onClose == nil {
		t.Fatal("the follower did not embed the member after its owner left")
	}
}
