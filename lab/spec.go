package lab

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/template"

	"github.com/lifeboat-dr/lifeboat/driver/process"
)

// specTemplate is the lab's lifeboat.yaml. The drivers are the daemon's
// agent; hooks (none here) would run as scripts where the CLI runs.
var specTemplate = template.Must(template.New("spec").Parse(`# The lab's service, written by 'lifeboat lab up'. Every driver call goes to
# the lab daemon's agent at {{.URL}}, which runs the real things: PostgreSQL
# in west (primary) and east (standby), the shop scale sets and the
# front door (drivers.frontdoor).
service: {{.Service}}

regions:
  primary:   {name: west}
  secondary: {name: east}
  witness:   {name: central}

objectives:
  rto: 1m
  rpo: 5s

units:
  storefront:
    compute:
      web:
        recipe:
          artifact: ./bin/lifeboat
          checksum: {{.Checksum}}
          command: [./lifeboat, lab, shop]
        standby: warm
        instances: {primary: 2, secondary: 2}
        probe: {http: /healthz, interval: 1s, timeout: 1s, failures: 3}
        connects-to: [orders]
        boot: 5s
    databases:
      orders:
        engine: postgres
        dr-mode: geo-replica
        replication: {{.Replication}}{{if .DegradeAfter}}
        degrade-after: {{.DegradeAfter}}{{end}}
        lag: 1s{{if .Tenants}}
        endpoints: {west: "{{.T.OrdersWest}}", east: "{{.T.OrdersEast}}"}
      # Tenant pools (lifeboat lab up --tenants N): paid's primary in west
      # and paideast's in east (split placement, seed 004's scenario 3),
      # both streaming to the other region; trial only in west, its DR
      # copy created in east by the tenants' recovery.
      paid:
        engine: postgres
        dr-mode: geo-replica
        lag: 1s
        endpoints: {west: "{{.T.PaidWest}}", east: "{{.T.PaidEast}}"}
      paideast:
        engine: postgres
        dr-mode: geo-replica
        lag: 1s
        endpoints: {west: "{{.T.PaidEastWest}}", east: "{{.T.PaidEastEast}}"}
      trial:
        engine: postgres
        dr-mode: none
        endpoints: {west: "{{.T.TrialWest}}", east: "{{.T.TrialEast}}"}{{end}}
    traffic:
      www:
        names: [{{.Host}}]
        ttl: 5s
        target: web

{{if .Tenants}}tenants:
  catalog: storefront.orders
  batch: 20
  concurrency: {{.T.Concurrency}}
  gate: {listen: "{{.T.Gate}}", wait: 30s}
  pools:
    paid: {database: storefront.paid, isolation: schema, capacity: {active: 50, standby: 10}}
    paideast: {database: storefront.paideast, region: east, isolation: schema}
    trial: {database: storefront.trial, isolation: schema}
  tiers:
    paid: {placement: split, pools: [paid, paideast], strategy: geo-replicate, priority: 1}
    trial: {pool: trial, strategy: geo-restore, priority: 2, backup-interval: 1h, objectives: {rto: 1h, rpo: 1h}}

{{end}}drivers:
  default: agent
  traffic: frontdoor
  agent: {url: "{{.URL}}"}
  frontdoor:
    lease: 5s
    listeners:
      http:
        listen: {{.Front}}
        upstreams: {west: {{.IngressWest}}, east: {{.IngressEast}}}

{{- if .Monitor}}

# A controller per region ('lifeboat serve --region R'), each in the
# region's network namespace, probing the regions' gateways (PostgreSQL as
# seen from the namespaces). The shop's web is not a target: every target
# is critical, and the warm standby region runs no web instance until a
# failover, so its web would always look down and block every failover.
monitor:
  mode: {{.Monitor}}
  interval: 250ms
  timeout: 250ms
  failures: 3
  lease: 1s
  targets:
{{- range .Targets}}
    {{.Region}}: {storefront.orders: "{{.Orders}}"}
{{- end}}

# One etcd member per region's controller, on the namespaces' addresses.
store:
  dir: .lifeboat
  members:
{{- range .Members}}
    {{.Region}}: {peer: "{{.Peer}}", client: "{{.Client}}"}
{{- end}}
{{- else}}

store: {dir: .lifeboat}
{{- end}}

# The HTTP API, the dashboard (/ui/) and /metrics. The tokens are in
# api-tokens.txt (operator and viewer); api-tokens holds only their hashes.
api:
  tokens: api-tokens
{{- if .Monitor}}
  # Each region's controller listens on its namespace's loopback, and the
  # lab daemon forwards the same port on the host's loopback into the
  # namespace: loopback on both sides, so bearer tokens never cross a
  # network in clear and no TLS is needed.
  listen-in:
{{- range .APIIn}}
    {{.Region}}: "{{.Addr}}"
{{- end}}
{{- else}}
  # Served by the lab daemon, the plain lab's 'lifeboat serve'.
  listen: "{{.APIListen}}"
{{- end}}
`))

// specAPI is a row of api.listen-in.
type specAPI struct{ Region, Addr string }

// specTarget and specMember are rows of the monitor's sections.
type specTarget struct{ Region, Web, Orders string }
type specMember struct{ Region, Peer, Client string }

// writeSpec writes the lab's lifeboat.yaml.
func writeSpec(in *Info) error {
	f, err := os.Create(in.Spec)
	if err != nil {
		return fmt.Errorf("writing the lab's spec: %w", err)
	}
	repl := in.Replication
	if repl == "" {
		repl = "async"
	}
	data := map[string]any{"Service": Service, "Checksum": in.Checksum, "URL": in.URL, "Host": HostName,
		"Replication": repl, "DegradeAfter": in.DegradeAfter,
		"Front": in.Front, "IngressWest": in.Region(West).Ingress, "IngressEast": in.Region(East).Ingress}
	if in.Tenants > 0 {
		data["Tenants"], data["T"] = true, tenantSpec(in)
	}
	// The API's tokens and addresses; lab.json records where they are.
	if err := apiLayout(in); err != nil {
		f.Close()
		return err
	}
	if err := saveInfo(in); err != nil {
		f.Close()
		return err
	}
	var apiIn []specAPI
	for _, r := range in.Regions {
		apiIn = append(apiIn, specAPI{Region: r.Name, Addr: addr(r.PortBase + offAPI)})
	}
	data["APIIn"], data["APIListen"] = apiIn, addr(in.Region(Central).PortBase+offAPI)
	// The monitor's sections need the namespaces' addresses: the daemon
	// writes them once it has made the namespaces.
	if in.Monitor != "" && in.Net != nil {
		data["URL"] = in.Net.AgentURL
		data["Monitor"] = in.Monitor
		var ts []specTarget
		for _, r := range []string{West, East} {
			ts = append(ts, specTarget{Region: r, Web: "http://" + in.Net.Gateway(r, gatewayWebPort) + "/healthz",
				Orders: fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", DBUser, DBPassword, in.Net.Gateway(r, gatewayPGPort), ShopDatabase)})
		}
		var ms []specMember
		for _, r := range []string{West, East, Central} {
			ms = append(ms, specMember{Region: r, Peer: in.Net.Gateway(r, memberPeerPort), Client: in.Net.Gateway(r, memberClientPort)})
		}
		data["Targets"], data["Members"] = ts, ms
	}
	err = specTemplate.Execute(f, data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// installBinary copies the program the shop instances run into
// DIR/bin/lifeboat (a hard link when it can) and returns its checksum in the
// spec's form, sha256:<hex>.
func installBinary(src, dst string) (string, error) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	_ = os.Remove(dst)
	if err := os.Link(src, dst); err != nil {
		if err := copyFile(src, dst); err != nil {
			return "", fmt.Errorf("copying %s to %s: %w", src, dst, err)
		}
	}
	return process.Checksum(dst)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
