// Package bindtest runs a real BIND 9 (named) on loopback for tests and
// benchmarks: one primary zone that accepts RFC 2136 updates signed with
// one TSIG key.
//
// named runs in the foreground (-g) as a child of the caller, in a given
// directory (Start: under t.TempDir()), on a free port of 127.0.0.1, and is
// stopped by its PID (Start: when the test ends). When the caller runs as
// root, named drops to the `bind` user (-u bind), which must be able to
// write the zone's journal.
package bindtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Defaults of Options.
const (
	DefaultZone    = "shop.example.test."
	DefaultKeyName = "lifeboat-key."
	// DefaultSecret is a fixed 32-byte hmac-sha256 secret (base64): tests only.
	DefaultSecret = "bGlmZWJvYXQtdGVzdC1zZWNyZXQtMzItYnl0ZXMhISE="
	// DefaultNamed is Debian's named.
	DefaultNamed = "/usr/sbin/named"
)

// Options of a test server. The zero value is usable.
type Options struct {
	Zone    string // default DefaultZone
	KeyName string // default DefaultKeyName
	Secret  string // base64, default DefaultSecret
	// AllowUpdate is the zone's allow-update list; default: the key.
	AllowUpdate string
	// Records are extra lines of the zone file (relative names are in the zone).
	Records []string
	// ZoneFile, when set, is the whole zone file instead of the default
	// SOA, NS and Records.
	ZoneFile string
	// MinimalResponses answers with the answer section only (no NS or
	// glue in the authority and additional sections).
	MinimalResponses bool
	// Named is the named binary; default $LIFEBOAT_NAMED or DefaultNamed.
	Named string
	// StartTimeout bounds the wait for the first SOA answer; default 30 s.
	StartTimeout time.Duration
}

// Server is a running named.
type Server struct {
	Addr    string // "127.0.0.1:port", UDP and TCP
	Port    int
	Zone    string
	KeyName string
	Secret  string
	Dir     string // named's working directory: named.conf, the zone, its journal, named.log

	cmd      *exec.Cmd
	exited   chan struct{}
	waitErr  error
	stopOnce sync.Once
	log      *bytes.Buffer
	logMu    *sync.Mutex
}

// Errors of Launch when BIND cannot run here at all.
var (
	ErrNoNamed    = errors.New("named not found (run scripts/deps.sh, or install Debian's bind9: apt-get install bind9 dnsutils)")
	ErrNoBindUser = errors.New("running as root needs the `bind` user for named -u bind (Debian's bind9 package creates it)")
)

// Start starts named under t.TempDir() and waits until it answers the
// zone's SOA. The server is stopped when the test ends, and its log shown
// if the test failed. It fails the test when named is missing:
// scripts/deps.sh installs it.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	base := t.TempDir()
	if os.Geteuid() == 0 {
		// t.TempDir() and its parent are 0700 root: let bind traverse them.
		for _, d := range []string{base, filepath.Dir(base)} {
			if err := os.Chmod(d, 0o711); err != nil {
				t.Fatalf("bindtest: %v", err)
			}
		}
	}
	s, err := Launch(context.Background(), o, filepath.Join(base, "named"))
	if err != nil {
		t.Fatalf("bindtest: %v", err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("named log (%s):\n%s", s.Dir, s.Log())
		}
	})
	return s
}

// Launch starts named in dir (created here; its parents must be
// traversable by the bind user when root) and waits until it answers the
// zone's SOA. The caller stops it with Stop.
func Launch(ctx context.Context, o Options, dir string) (*Server, error) {
	if o.Zone == "" {
		o.Zone = DefaultZone
	}
	o.Zone = dns.CanonicalName(o.Zone)
	if o.KeyName == "" {
		o.KeyName = DefaultKeyName
	}
	o.KeyName = dns.CanonicalName(o.KeyName)
	if o.Secret == "" {
		o.Secret = DefaultSecret
	}
	if o.AllowUpdate == "" {
		o.AllowUpdate = fmt.Sprintf("key %q", strings.TrimSuffix(o.KeyName, "."))
	}
	if o.Named == "" {
		o.Named = os.Getenv("LIFEBOAT_NAMED")
	}
	if o.Named == "" {
		o.Named = DefaultNamed
	}
	if _, err := exec.LookPath(o.Named); err != nil {
		return nil, fmt.Errorf("%s: %w", o.Named, ErrNoNamed)
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 30 * time.Second
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("bind")
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNoBindUser, err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	// A free port can be taken by someone else between probe and bind:
	// try a few.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, fmt.Errorf("no free port on 127.0.0.1: %w", err)
		}
		s, err := launch(ctx, o, dir, port, uid, gid)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	return nil, lastErr
}

var errAddrInUse = errors.New("address in use")

func freePort() (int, error) {
	// The port must be free for both TCP and UDP.
	for i := 0; i < 20; i++ {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return port, nil
	}
	return 0, errors.New("no port free for both tcp and udp after 20 tries")
}

func launch(ctx context.Context, o Options, dir string, port, uid, gid int) (*Server, error) {
	minimal := ""
	if o.MinimalResponses {
		minimal = "\n\tminimal-responses yes;"
	}
	conf := fmt.Sprintf(`options {
	directory %[1]q;
	pid-file "named.pid";
	session-keyfile "session.key";
	managed-keys-directory %[1]q;
	dump-file "named_dump.db";
	statistics-file "named.stats";
	listen-on port %[2]d { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
	notify no;
	allow-query { 127.0.0.1; };
	automatic-interface-scan no;%[7]s
};
// No rndc channel: parallel test servers must not fight over port 953.
controls { };
key %[3]q {
	algorithm hmac-sha256;
	secret %[4]q;
};
zone %[5]q {
	type primary;
	file "zone.db";
	allow-update { %[6]s; };
};
`, dir, port, strings.TrimSuffix(o.KeyName, "."), o.Secret, strings.TrimSuffix(o.Zone, "."), o.AllowUpdate, minimal)
	zone := o.ZoneFile
	if zone == "" {
		zone = fmt.Sprintf(`$ORIGIN %[1]s
$TTL 300
@	IN SOA ns1.%[1]s hostmaster.%[1]s 1 3600 600 86400 60
@	IN NS ns1.%[1]s
ns1	IN A 127.0.0.1
%[2]s
`, o.Zone, strings.Join(o.Records, "\n"))
	}
	for name, body := range map[string]string{"named.conf": conf, "zone.db": zone} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			return nil, err
		}
		if uid >= 0 {
			if err := os.Chown(p, uid, gid); err != nil {
				return nil, err
			}
		}
	}
	args := []string{"-g", "-4", "-n", "1", "-c", filepath.Join(dir, "named.conf")}
	if uid >= 0 {
		args = append(args, "-u", "bind")
	}
	cmd := exec.Command(o.Named, args...)
	cmd.Dir = dir
	s := &Server{
		Addr: fmt.Sprintf("127.0.0.1:%d", port), Port: port,
		Zone: o.Zone, KeyName: o.KeyName, Secret: o.Secret, Dir: dir,
		cmd: cmd, exited: make(chan struct{}), log: new(bytes.Buffer), logMu: new(sync.Mutex),
	}
	cmd.Stdout = lockedWriter{s.logMu, s.log}
	cmd.Stderr = lockedWriter{s.logMu, s.log}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", o.Named, err)
	}
	go func() { s.waitErr = cmd.Wait(); close(s.exited) }()

	ctx, cancel := context.WithTimeout(ctx, o.StartTimeout)
	defer cancel()
	for {
		if _, err := s.Serial(ctx); err == nil {
			return s, nil
		}
		select {
		case <-s.exited:
			l := s.Log()
			if strings.Contains(l, "address in use") {
				return nil, fmt.Errorf("named on port %d: %w", port, errAddrInUse)
			}
			return nil, fmt.Errorf("named exited before serving %s (%v); its log:\n%s", o.Zone, s.waitErr, l)
		case <-ctx.Done():
			s.Stop()
			return nil, fmt.Errorf("named did not answer the SOA of %s on %s within %s; its log:\n%s", o.Zone, s.Addr, o.StartTimeout, s.Log())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Log returns what named wrote so far.
func (s *Server) Log() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.log.String()
}

// PID of named.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Stop stops named (SIGTERM, then SIGKILL after 10 s) and waits for it to
// exit. Safe to call more than once.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		select {
		case <-s.exited:
			return
		default:
		}
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	})
}

// Query asks the server (over TCP, unsigned) for name/qtype and returns the answer section.
func (s *Server) Query(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = false
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
	r, _, err := c.ExchangeContext(ctx, m, s.Addr)
	if err != nil {
		return nil, err
	}
	if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
		return nil, fmt.Errorf("query %s %s: rcode %s", name, dns.TypeToString[qtype], dns.RcodeToString[r.Rcode])
	}
	return r.Answer, nil
}

// Serial returns the zone's SOA serial.
func (s *Server) Serial(ctx context.Context) (uint32, error) {
	rrs, err := s.Query(ctx, s.Zone, dns.TypeSOA)
	if err != nil {
		return 0, err
	}
	for _, rr := range rrs {
		if soa, ok := rr.(*dns.SOA); ok {
			return soa.Serial, nil
		}
	}
	return 0, fmt.Errorf("no SOA for %s in the answer", s.Zone)
}
