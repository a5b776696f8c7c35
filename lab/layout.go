// Package lab is a multi-region lab on one machine: a primary (west),
// a secondary (east) and a witness (central) region, each with its own
// directory and block of loopback ports. West runs the PostgreSQL primary and
// east a streaming standby whose replication crosses a WAN link; each region
// runs the shop scale set (driver/process) behind its own ingress link; a front
// listener, the service's public address, forwards to the active region's
// ingress. A daemon (Serve) owns all of it and serves the drivers over HTTP
// (driver/agent) plus fault injection, so that the ordinary lifeboat commands
// can fail the service over for real.
//
// On disk, in the lab's directory:
//
//	lab.json         the layout: regions, port blocks, addresses (written by Up)
//	lab.pid          the daemon's PID while it runs
//	lab.log          the daemon's output
//	pids.log         every PID the daemon started, for Down's leftover check
//	lifeboat.yaml    the spec describing the lab, for the other commands
//	bin/lifeboat     the artifact the shop instances are built from
//	west/pg, east/pg PostgreSQL data directories
//	<region>/...     the region's scale sets (driver/process)
package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/api"
)

// Region names and roles of the lab.
const (
	West    = "west"    // primary
	East    = "east"    // secondary
	Central = "central" // witness
)

// Names of the lab's service, as its spec says.
const (
	Service  = "shop"
	Unit     = "storefront"
	Web      = "web"
	Orders   = "orders"
	WWW      = "www"
	HostName = "shop.lab.test"
)

// PostgreSQL accounts of the lab. It is a lab on loopback: the passwords are
// here so that every command can reach the databases without a secret store.
const (
	DBUser         = "lifeboat"
	DBPassword     = "lifeboat-lab"
	ReplUser       = "replicator"
	ReplPassword   = "replicator-lab"
	ShopDatabase   = "postgres"
	loopback       = "127.0.0.1"
	blockSize      = 100
	shopPortOffset = 10 // ports base+10.. are the region's shop instances
	lowestBase     = 20000
	highestPort    = 32767 // below the kernel's ephemeral ports
)

// Offsets in a region's port block.
const (
	offPostgres = 0 // west, east: PostgreSQL; central: the daemon (agent)
	offIngress  = 1 // west, east: the region's ingress link; central: the front
	offPeer     = 2 // west, east: this region's view of the other region's PostgreSQL
	// The lab with tenants: the pools' PostgreSQL in west and east, and
	// the tenants' gate in central.
	offPaid     = 3
	offPaidEast = 4
	offTrial    = 5
	offGate     = 2 // central
	// Every region: its controller's HTTP API, dashboard and /metrics
	// (api.listen-in), on the namespace's loopback and forwarded to the
	// same port on the host's. Central's is also the plain lab daemon's
	// (api.listen): the plain lab has no controllers to clash with.
	offAPI = 6
)

// The API's files in the lab's directory: the tokens people use (0600,
// plain text) and the spec's api.tokens (hashed).
const (
	apiTokensFile = "api-tokens.txt"
	apiHashedFile = "api-tokens"
)

// APIInfo is where the lab's HTTP API, dashboard and metrics answer, as
// seen from the host.
type APIInfo struct {
	// Tokens is the file with the operator's and the viewer's bearer
	// tokens (plain text, 0600); Hashed is the spec's api.tokens.
	Tokens string `json:"tokens"`
	Hashed string `json:"hashed"`
	// URLs by region: each controller's API in the monitored lab; in the
	// plain lab, the daemon's under "" .
	URLs map[string]string `json:"urls"`
	// Dashboard is the dashboard to open: the witness's controller (it
	// survives a region-down of west or east), or the plain lab daemon's.
	Dashboard string `json:"dashboard"`
}

// RegionInfo is where one region of the lab lives.
type RegionInfo struct {
	Name string              `json:"name"`
	Role lifeboat.RegionRole `json:"role"`
	Dir  string              `json:"dir"`
	// PortBase is the first port of the region's block of Ports ports.
	PortBase int `json:"port_base"`
	Ports    int `json:"ports"`
	// Postgres is the region's PostgreSQL (empty for the witness).
	Postgres string `json:"postgres,omitempty"`
	// Ingress is the region's ingress link, in front of its shop.
	Ingress string `json:"ingress,omitempty"`
	// PeerPostgres is this region's view of the other region's PostgreSQL:
	// a WAN link, so that replication crosses it.
	PeerPostgres string `json:"peer_postgres,omitempty"`
	// ShopPortBase is the first port of the region's shop instances.
	ShopPortBase int `json:"shop_port_base,omitempty"`
}

// Info describes a lab: what is where.
type Info struct {
	Dir string `json:"dir"`
	// Replication of the orders database: async (default) or sync, and
	// for sync how long a missing standby is waited for ("" = strict).
	Replication  string `json:"replication,omitempty"`
	DegradeAfter string `json:"degrade_after,omitempty"`
	// URL is the daemon's address: the agent (/v1/...) and the lab's own
	// endpoints (/lab/...).
	URL string `json:"url"`
	// Front is the service's public address (host:port).
	Front string `json:"front"`
	// Spec is the lab's lifeboat.yaml.
	Spec string `json:"spec"`
	// Binary is the artifact of the shop instances (DIR/bin/lifeboat).
	Binary string `json:"binary"`
	// Monitor is the monitor's mode (manual, notify, automatic) when the
	// lab runs a controller per region in network namespaces; "" for the
	// lab without them.
	Monitor string `json:"monitor,omitempty"`
	// Net is where the regions' namespaces are (set by the daemon when
	// Monitor is on).
	Net *NetInfo `json:"net,omitempty"`
	// Tenants is how many tenants 'lab up --tenants N' created (0: a lab
	// without tenants); TenantConcurrency is tenants.concurrency; Gate is
	// the tenants' PostgreSQL front door (host:port).
	Tenants           int `json:"tenants,omitempty"`
	TenantConcurrency int `json:"tenant_concurrency,omitempty"`
	// TenantScenario is Options.TenantScenario.
	TenantScenario int    `json:"tenant_scenario,omitempty"`
	Gate           string `json:"gate,omitempty"`
	// API is where the HTTP API, the dashboard and /metrics answer, and
	// where the tokens are (set by Up).
	API      *APIInfo     `json:"api,omitempty"`
	Checksum string       `json:"checksum"`
	Regions  []RegionInfo `json:"regions"`
	// Set by Up, not stored.
	PID            int           `json:"pid,omitempty"`
	Ready          time.Duration `json:"ready,omitempty"`
	AlreadyRunning bool          `json:"already_running,omitempty"`
}

// Region returns the region called name (nil if none).
func (in *Info) Region(name string) *RegionInfo {
	for i := range in.Regions {
		if in.Regions[i].Name == name {
			return &in.Regions[i]
		}
	}
	return nil
}

// Resource is the systematic name of a lab component in a region.
func Resource(component, region string) string {
	return lifeboat.ResourceName(Service, Unit, component, region)
}

func layoutPath(dir string) string { return filepath.Join(dir, "lab.json") }
func pidPath(dir string) string    { return filepath.Join(dir, "lab.pid") }
func logPath(dir string) string    { return filepath.Join(dir, "lab.log") }
func pidsPath(dir string) string   { return filepath.Join(dir, "pids.log") }
func specPath(dir string) string   { return filepath.Join(dir, "lifeboat.yaml") }

// LoadInfo reads the layout of the lab in dir.
func LoadInfo(dir string) (*Info, error) {
	b, err := os.ReadFile(layoutPath(dir))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no lab in %s (no lab.json): run 'lifeboat lab up --dir %s' first: %w", dir, dir, err)
		}
		return nil, fmt.Errorf("reading the lab's layout: %w", err)
	}
	var in Info
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, fmt.Errorf("%s is damaged (%v): run 'lifeboat lab down --dir %s' and remove the directory to start afresh", layoutPath(dir), err, dir)
	}
	return &in, nil
}

func saveInfo(in *Info) error {
	b, err := json.MarshalIndent(in, "", "  ")
	if err != nil {
		return err
	}
	tmp := layoutPath(in.Dir) + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, layoutPath(in.Dir))
}

// newLayout picks a free block of ports for each region and lays out the
// lab in dir (absolute).
func newLayout(dir string) (*Info, error) {
	bases, err := freeBlocks(3)
	if err != nil {
		return nil, err
	}
	in := &Info{Dir: dir, Spec: specPath(dir), Binary: filepath.Join(dir, "bin", "lifeboat")}
	roles := []struct {
		name string
		role lifeboat.RegionRole
	}{{West, lifeboat.RolePrimary}, {East, lifeboat.RoleSecondary}, {Central, lifeboat.RoleWitness}}
	for i, r := range roles {
		b := bases[i]
		ri := RegionInfo{Name: r.name, Role: r.role, Dir: filepath.Join(dir, r.name), PortBase: b, Ports: blockSize}
		if r.name != Central {
			ri.Postgres = addr(b + offPostgres)
			ri.Ingress = addr(b + offIngress)
			ri.PeerPostgres = addr(b + offPeer)
			ri.ShopPortBase = b + shopPortOffset
		} else {
			in.URL = "http://" + addr(b+offPostgres)
			in.Front = addr(b + offIngress)
		}
		in.Regions = append(in.Regions, ri)
	}
	return in, nil
}

func addr(port int) string { return net.JoinHostPort(loopback, strconv.Itoa(port)) }

func port(hostport string) int {
	_, p, _ := net.SplitHostPort(hostport)
	n, _ := strconv.Atoi(p)
	return n
}

// freeBlocks finds n disjoint blocks of blockSize ports on 127.0.0.1, below
// the ephemeral range, where nothing listens now. Random starting points
// keep two labs (or two tests) from racing for the same block.
func freeBlocks(n int) ([]int, error) {
	slots := (highestPort + 1 - lowestBase) / blockSize
	start := rand.IntN(slots)
	var out []int
	for i := 0; i < slots && len(out) < n; i++ {
		base := lowestBase + ((start+i)%slots)*blockSize
		if blockFree(base) {
			out = append(out, base)
		}
	}
	if len(out) < n {
		return nil, lifeboat.Transient("", "", fmt.Errorf("found only %d free blocks of %d ports on %s between %d and %d; stop other labs ('lifeboat lab down') and try again", len(out), blockSize, loopback, lowestBase, highestPort))
	}
	return out, nil
}

func blockFree(base int) bool {
	for p := base; p < base+blockSize; p++ {
		l, err := net.Listen("tcp", addr(p))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// Names of the lab's API callers, in the hashed tokens file.
const (
	apiOperator = "lab-operator"
	apiViewer   = "lab-viewer"
)

// apiLayout sets in.API: the API's address per region (in each region's
// port block, which an older lab.json already reserved) and its tokens,
// made on the first up and kept afterwards, so that a restarted lab's
// tokens still work.
func apiLayout(in *Info) error {
	a := &APIInfo{Tokens: filepath.Join(in.Dir, apiTokensFile), Hashed: filepath.Join(in.Dir, apiHashedFile), URLs: map[string]string{}}
	if in.Monitor != "" {
		for _, r := range in.Regions {
			a.URLs[r.Name] = "http://" + addr(r.PortBase+offAPI)
		}
		a.Dashboard = a.URLs[Central] + "/ui/"
	} else {
		a.URLs[""] = "http://" + addr(in.Region(Central).PortBase+offAPI)
		a.Dashboard = a.URLs[""] + "/ui/"
	}
	in.API = a
	_, errPlain := os.Stat(a.Tokens)
	_, errHashed := os.Stat(a.Hashed)
	if errPlain == nil && errHashed == nil {
		return nil
	}
	var plain, hashed []string
	for _, c := range []struct {
		name string
		role lifeboat.Role
	}{{apiOperator, lifeboat.RoleOperator}, {apiViewer, lifeboat.RoleViewer}} {
		tok, line, err := api.NewToken(c.name, c.role)
		if err != nil {
			return fmt.Errorf("making the lab's %s token: %w", c.role, err)
		}
		plain = append(plain, string(c.role)+" "+tok)
		hashed = append(hashed, line)
	}
	head := "# The lab's API tokens, written by 'lifeboat lab up' (kept until the lab's\n" +
		"# directory is removed). Paste one into the dashboard's login at\n#   " + a.Dashboard + "\n" +
		"# or send it as 'Authorization: Bearer <token>', or export LIFEBOAT_TOKEN=<token>.\n" +
		"# The operator may start switchovers and approve steps; the viewer only reads.\n"
	if err := os.WriteFile(a.Hashed, []byte("# The lab's API callers: only the tokens' SHA-256 (the tokens are in "+apiTokensFile+").\n"+strings.Join(hashed, "\n")+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing the lab's API tokens file: %w", err)
	}
	if err := os.WriteFile(a.Tokens, []byte(head+strings.Join(plain, "\n")+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing the lab's API tokens for people: %w", err)
	}
	return nil
}

// APITokens reads the lab's API tokens (from DIR/api-tokens.txt) by role:
// the operator's and the viewer's.
func APITokens(dir string) (map[lifeboat.Role]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, apiTokensFile))
	if err != nil {
		return nil, fmt.Errorf("reading the lab's API tokens (%w): 'lifeboat lab up --dir %s' writes them", err, dir)
	}
	out := map[lifeboat.Role]string{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && !strings.HasPrefix(f[0], "#") {
			out[lifeboat.Role(f[0])] = f[1]
		}
	}
	if out[lifeboat.RoleOperator] == "" || out[lifeboat.RoleViewer] == "" {
		return nil, fmt.Errorf("%s has no operator or viewer token: remove it and %s, and run 'lifeboat lab up --dir %s' again to make new ones", filepath.Join(dir, apiTokensFile), apiHashedFile, dir)
	}
	return out, nil
}
