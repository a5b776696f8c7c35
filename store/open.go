package store

import (
	"context"
	"errors"
	"fmt"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Options says where the store is.
type Options struct {
	Dir       string   // data dir of the embedded etcd member (the CLI passes <spec dir>/.lifeboat)
	Endpoints []string // an external etcd cluster: when set nothing is embedded
	Service   string   // keys live under /lifeboat/<service>/
	// Members are the regions' embedded members (spec store.members): when
	// set, Open is a client of their client addresses and embeds nothing
	// (the members run in `lifeboat serve --region R`, see OpenMember).
	Members map[string]lifeboat.StoreMember
}

// DefaultOptions returns the options of the embedded default for a service
// whose spec is in the current directory.
func DefaultOptions(service string) Options {
	return Options{Dir: ".lifeboat", Service: service}
}

// Validate reports options Open cannot use.
func (o Options) Validate() error {
	if err := checkService(o.Service); err != nil {
		return err
	}
	if len(o.Members) > 0 {
		if len(o.Endpoints) > 0 {
			return fmt.Errorf("store.members and store.endpoints are both set: use members for etcd embedded in each region's controller, or endpoints for an external cluster, not both")
		}
		return checkMembers(o.Members)
	}
	if len(o.Endpoints) == 0 && o.Dir == "" {
		return fmt.Errorf("no store dir and no etcd endpoints: set store.dir (default .lifeboat) or store.endpoints in lifeboat.yaml")
	}
	for _, ep := range o.Endpoints {
		if strings.TrimSpace(ep) == "" {
			return fmt.Errorf("store.endpoints has an empty entry: list etcd client URLs like http://10.0.0.1:2379")
		}
	}
	return nil
}

// Files in Dir next to the member's data.
const (
	endpointFile = "endpoint" // client URL of the live member, written once it is ready
	lockFile     = "lock"     // flock'd by the process that embeds the member; holds its pid and host
	logFile      = "etcd.log" // the member's own log, errors only
	memberDir    = "etcd"     // etcd's data dir
)

// memberDirKey holds the dir an embedded member serves, written at every
// start; a process joins a member only if it serves the dir it wants.
const memberDirKey = "/lifeboat/.member/dir"

// Timeouts of Open. Generous: they only bound waits on things that are
// broken, never the normal path.
var (
	// probeTimeout bounds a check that an endpoint answers.
	probeTimeout = 2 * time.Second
	// lockedWait is how long to wait for the process that holds Dir's
	// lock to publish a working endpoint (it may be starting its member).
	lockedWait = 15 * time.Second
	// readyTimeout bounds the embedded member's start (replaying a big WAL
	// takes a while; a hung start must not hang lifeboat).
	readyTimeout = 60 * time.Second
)

// Open opens the store: an external cluster when o.Endpoints is set;
// otherwise the member embedded for o.Dir, by another live lifeboat process
// (then this one is its client) or by this one (started here, stopped by
// Close).
func Open(ctx context.Context, o Options) (lifeboat.Store, error) {
	if err := o.Validate(); err != nil {
		return nil, lifeboat.Permanent(opOpen, o.Dir, err)
	}
	if len(o.Members) > 0 {
		return openMembers(ctx, o)
	}
	if len(o.Endpoints) > 0 {
		where := "cluster " + strings.Join(o.Endpoints, ",")
		cli, err := dial(ctx, o.Endpoints, 5*time.Second)
		if err != nil {
			return nil, lifeboat.Transient(opOpen, where, fmt.Errorf("etcd %s does not answer: %w; check that the cluster is up and reachable from here, or remove store.endpoints from lifeboat.yaml to use the embedded member", where, err))
		}
		return newEtcdStore(cli, o.Service, where, nil), nil
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, lifeboat.Permanent(opOpen, o.Dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, lifeboat.Permanent(opOpen, dir, fmt.Errorf("create the store dir: %w; check its parent's permissions or set store.dir", err))
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real // the same name for the dir whichever path led here
	}
	if s := joinLive(ctx, dir, o.Service); s != nil {
		return follow(s, o), nil
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, lifeboat.Permanent(opOpen, dir, fmt.Errorf("open the store's lock file: %w", err))
	}
	// Non-blocking: bbolt's own flock would block forever behind a hung
	// process, so we decide here who embeds the member.
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, lifeboat.Permanent(opOpen, dir, fmt.Errorf("lock %s: %w", filepath.Join(dir, lockFile), err))
		}
		s, err := waitForHolder(ctx, dir, o.Service)
		if err != nil {
			return nil, err
		}
		return follow(s, o), nil
	}
	s, err := embedMember(ctx, dir, o.Service, lock)
	if err != nil {
		_ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
		lock.Close()
		return nil, err
	}
	return s, nil
}

// joinLive connects to the member another process embeds for dir, if its
// endpoint file names one that answers.
func joinLive(ctx context.Context, dir, service string) *etcdStore {
	b, err := os.ReadFile(filepath.Join(dir, endpointFile))
	if err != nil {
		return nil
	}
	ep := strings.TrimSpace(string(b))
	if !isLoopback(ep) {
		return nil // not ours to follow: we only ever write loopback URLs
	}
	cli, err := dial(ctx, []string{ep}, probeTimeout)
	if err != nil {
		return nil
	}
	// A stale endpoint's port may since have gone to the member of
	// another dir: join only the member that serves this one.
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	resp, err := cli.Get(pctx, memberDirKey)
	if err != nil || len(resp.Kvs) == 0 || string(resp.Kvs[0].Value) != dir {
		cli.Close()
		return nil
	}
	return newEtcdStore(cli, service, fmt.Sprintf("member embedded by another lifeboat process for %s at %s", dir, ep), nil)
}

// waitForHolder waits for the process holding dir's lock to publish an
// endpoint that answers, and connects to it.
func waitForHolder(ctx context.Context, dir, service string) (lifeboat.Store, error) {
	deadline := time.Now().Add(lockedWait)
	for {
		if s := joinLive(ctx, dir, service); s != nil {
			return s, nil
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return nil, lifeboat.Transient(opOpen, dir, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	holder := "another process"
	if b, err := os.ReadFile(filepath.Join(dir, lockFile)); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		holder = strings.TrimSpace(string(b))
	}
	published := "it published no endpoint"
	if ep, err := os.ReadFile(filepath.Join(dir, endpointFile)); err == nil {
		published = "its endpoint file says " + strings.TrimSpace(string(ep))
	}
	return nil, lifeboat.Transient(opOpen, dir, fmt.Errorf("store dir %s is locked by %s, whose etcd member does not answer (%s; waited %s): if that process is hung, stop it by its pid and retry; if it is starting a large store, retry in a minute",
		dir, holder, published, lockedWait))
}

// embedMember starts an etcd member for dir on loopback, publishes its
// client URL in dir/endpoint and returns a store that uses it through an
// ordinary client. The caller holds dir's lock; Close releases it.
func embedMember(ctx context.Context, dir, service string, lock *os.File) (*etcdStore, error) {
	host, _ := os.Hostname()
	_ = lock.Truncate(0)
	_, _ = lock.WriteAt([]byte("lifeboat pid "+strconv.Itoa(os.Getpid())+" on "+host+"\n"), 0)
	// A leftover from a process that died: it does not answer (joinLive
	// tried) and we hold the lock, so nobody else can be serving dir.
	_ = os.Remove(filepath.Join(dir, endpointFile))

	cfg := embed.NewConfig()
	cfg.Name = "lifeboat"
	cfg.Dir = filepath.Join(dir, memberDir)
	// Loopback only, ports picked by the OS. One member never dials a
	// peer, but etcd wants a peer URL to name the member.
	local := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{local}, []url.URL{local}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{local}, []url.URL{local}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.ListenClientHttpUrls, cfg.ListenMetricsUrls = nil, nil
	cfg.EnableGRPCGateway = false
	// A lone member elects itself after a randomised election timeout when
	// it restarts; nobody competes with it, so a short timeout only makes
	// reopening fast (≈0.1 s instead of up to 1 s).
	cfg.TickMs, cfg.ElectionMs = 10, 100
	// Quiet: errors only, to a file next to the data.
	cfg.Logger, cfg.LogLevel = "zap", "error"
	cfg.LogOutputs = []string{filepath.Join(dir, logFile)}
	// The state key is rewritten by every step: compact old revisions so
	// the database does not grow without bound.
	cfg.AutoCompactionMode, cfg.AutoCompactionRetention = "periodic", "10m"

	type started struct {
		e   *embed.Etcd
		err error
	}
	done := make(chan started, 1)
	go func() {
		e, err := embed.StartEtcd(cfg)
		done <- started{e, err}
	}()
	var e *embed.Etcd
	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	fail := func(err error) (*etcdStore, error) {
		return nil, lifeboat.Transient(opOpen, dir, fmt.Errorf("start the embedded etcd member in %s: %w (its log: %s)", cfg.Dir, err, filepath.Join(dir, logFile)))
	}
	select {
	case r := <-done:
		if r.err != nil {
			return fail(r.err)
		}
		e = r.e
	case <-timer.C:
		// StartEtcd cannot be interrupted; it stays behind in this
		// process, which is about to report the error and exit.
		return fail(fmt.Errorf("not started after %s: is another program (not lifeboat) using this data dir?", readyTimeout))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fail(err)
	case <-timer.C:
		e.Close()
		return fail(fmt.Errorf("not ready after %s", readyTimeout))
	case <-ctx.Done():
		e.Close()
		return fail(ctx.Err())
	}
	ep := "http://" + e.Clients[0].Addr().String()
	// This process talks to its own member in-process (the same clientv3
	// API without the loopback hop: a third more appends per second);
	// other processes use the endpoint.
	cli := v3client.New(e.Server)
	if _, err := cli.Put(ctx, memberDirKey, dir); err != nil {
		cli.Close()
		e.Close()
		return fail(err)
	}
	if err := writeFileAtomic(filepath.Join(dir, endpointFile), []byte(ep+"\n")); err != nil {
		cli.Close()
		e.Close()
		return nil, lifeboat.Permanent(opOpen, dir, fmt.Errorf("publish the member's endpoint: %w", err))
	}
	stopMember := func() error {
		// Unpublish first, so no newcomer connects to a member going away.
		epPath := filepath.Join(dir, endpointFile)
		if b, err := os.ReadFile(epPath); err == nil && strings.TrimSpace(string(b)) == ep {
			_ = os.Remove(epPath)
		}
		e.Close()
		_ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
		return lock.Close()
	}
	return newEtcdStore(cli, service, fmt.Sprintf("member embedded for %s at %s", dir, ep), stopMember), nil
}

// dial connects to endpoints and checks that they answer within timeout
// (the client itself connects lazily).
func dial(ctx context.Context, endpoints []string, timeout time.Duration) (*clientv3.Client, error) {
	if err := anyListening(ctx, endpoints, timeout); err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: timeout,
		// A member behind a partition drops packets and its connection
		// looks alive: ping it while a call is in flight, so that calls go
		// to the others within about two seconds instead of waiting on it.
		// Not while idle: etcd's members refuse pings without a stream
		// (GOAWAY "too_many_pings"), which cut idle clients off.
		DialKeepAliveTime:    time.Second,
		DialKeepAliveTimeout: time.Second,
		PermitWithoutStream:  false,
		Logger:               zap.NewNop(),
	})
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := cli.Get(pctx, "/lifeboat/", clientv3.WithCountOnly()); err != nil {
		cli.Close()
		return nil, err
	}
	return cli, nil
}

// anyListening fails fast when no endpoint accepts a TCP connection: the
// etcd client would retry a refused connection until its deadline and then
// only say "context deadline exceeded".
func anyListening(ctx context.Context, endpoints []string, timeout time.Duration) error {
	var errs []string
	d := net.Dialer{Timeout: timeout}
	for _, ep := range endpoints {
		addr := ep
		if u, err := url.Parse(ep); err == nil && u.Host != "" {
			if u.Scheme != "http" && u.Scheme != "https" {
				return nil // unix sockets and the like: let the client judge
			}
			addr = u.Host
		}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		errs = append(errs, err.Error())
	}
	return errors.New(strings.Join(errs, "; "))
}

func isLoopback(ep string) bool {
	u, err := url.Parse(ep)
	return err == nil && (u.Hostname() == "127.0.0.1" || u.Hostname() == "::1" || u.Hostname() == "localhost")
}

// writeFileAtomic writes a file so that readers see all of it or nothing.
func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
