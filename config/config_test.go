package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

const examplePath = "../examples/script/lifeboat.yaml"

// minimal is a small valid spec the tests below break one field at a time.
const minimal = `service: shop
regions:
  primary: {name: west}
  secondary: {name: east}
objectives:
  rto: 5m
  rpo: 30s
units:
  storefront:
    compute:
      web:
        recipe:
          artifact: ./bin/shop
          command: [./shop]
        standby: warm
        instances: {primary: 2, secondary: 2}
    databases:
      orders: {engine: postgres, dr-mode: geo-replica, replication: sync}
    traffic:
      www:
        names: [shop.example.test]
        target: web
`

func TestMinimalSpecHasNoDiagnostics(t *testing.T) {
	spec, diags := Parse("lifeboat.yaml", []byte(minimal))
	if len(diags) != 0 || spec == nil {
		t.Fatalf("want a spec and no diagnostics, got %v:\n%s", spec != nil, diags)
	}
	if spec.File != "lifeboat.yaml" {
		t.Errorf("File = %q", spec.File)
	}
}

// The reflective decoder must read a valid spec exactly as yaml.v3's own
// decoder does; only the diagnostics differ.
func TestDecodeMatchesYAMLUnmarshal(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	spec, diags := Parse("lifeboat.yaml", data)
	if spec == nil {
		t.Fatalf("example has errors:\n%s", diags)
	}
	var want lifeboat.Spec
	if err := yaml.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	spec.File = ""
	if !reflect.DeepEqual(*spec, want) {
		t.Errorf("decoded spec differs from yaml.Unmarshal:\n got %+v\nwant %+v", *spec, want)
	}
}

func TestDidYouMean(t *testing.T) {
	fields := []string{"recipe", "standby", "instances", "probe", "resource-group", "connects-to", "boot"}
	for _, tc := range []struct{ in, want string }{
		{"standbye", "standby"},
		{"Standby", "standby"},
		{"instance", "instances"},
		{"resource_group", "resource-group"},
		{"connect-to", "connects-to"},
		{"recpie", "recipe"},
		{"memory", ""},
		{"b", ""}, // one letter is close to everything; suggest nothing
		{"bot", "boot"},
	} {
		if got := didYouMean(tc.in, fields); got != tc.want {
			t.Errorf("didYouMean(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := unknownHint("colour", []string{"rto", "rpo"}); got != "valid fields here: rto, rpo" {
		t.Errorf("unknownHint with nothing close = %q", got)
	}
}

func TestDurations(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  time.Duration
		msg   string // expected diagnostic, "" when valid
	}{
		{"30s", 30 * time.Second, ""},
		{"1h30m", 90 * time.Minute, ""},
		{"0s", 0, ""},
		{"250ms", 250 * time.Millisecond, ""},
		{`"2m"`, 2 * time.Minute, ""},
		{"300", 0, "objectives.rpo: 300 is not a duration: it has no unit; write 300s for seconds or 300m for minutes (units: ms, s, m, h)"},
		{"5 minutes", 0, `objectives.rpo: "5 minutes" is not a duration; write it like 30s, 5m or 1h30m`},
		{"-1m", 0, "objectives.rpo: -1m is a negative duration; use 0s or more"},
		{"{m: 5}", 0, "objectives.rpo: expected a duration such as 30s or 5m, got a mapping; write it like 30s, 5m or 1h30m"},
	} {
		src := strings.Replace(minimal, "rpo: 30s", "rpo: "+tc.value, 1)
		spec, diags := Parse("f.yaml", []byte(src))
		if tc.msg == "" {
			if spec == nil {
				t.Errorf("rpo: %s: unexpected diagnostics:\n%s", tc.value, diags)
			} else if spec.Objectives.RPO.D() != tc.want {
				t.Errorf("rpo: %s = %v, want %v", tc.value, spec.Objectives.RPO.D(), tc.want)
			}
			continue
		}
		if len(diags) != 1 || !strings.HasSuffix(diags[0].String(), tc.msg) {
			t.Errorf("rpo: %s: want one diagnostic ending %q, got:\n%s", tc.value, tc.msg, diags)
		}
	}
}

// Positions are 1-based line and column of the offending value, key, or
// (for a missing field) the key of the mapping it belongs in.
func TestPositions(t *testing.T) {
	for _, tc := range []struct {
		name, old, new string
		line, col      int
		path           string
	}{
		{"enum value", "standby: warm", "standby: lukewarm", 15, 18, "units.storefront.compute.web.standby"},
		{"unknown key", "standby: warm", "standbi: warm", 15, 9, "units.storefront.compute.web.standbi"},
		{"missing field", "        standby: warm\n", "", 11, 7, "units.storefront.compute.web.standby"},
		{"flow mapping value", "{primary: 2,", "{primary: -2,", 16, 30, "units.storefront.compute.web.instances.primary"},
		{"list item", "target: web", "target: api", 22, 17, "units.storefront.traffic.www.target"},
		{"map key name", "  storefront:", "  store-front:", 9, 3, "units.store-front"},
		{"syntax error", "  rto: 5m", "  rto: [5m", 6, 3, ""},
	} {
		if !strings.Contains(minimal, tc.old) {
			t.Fatalf("%s: %q not in the minimal spec", tc.name, tc.old)
		}
		_, diags := Parse("f.yaml", []byte(strings.Replace(minimal, tc.old, tc.new, 1)))
		if len(diags) == 0 {
			t.Errorf("%s: no diagnostics", tc.name)
			continue
		}
		d := diags[0]
		if d.Line != tc.line || d.Column != tc.col || d.Path != tc.path || d.File != "f.yaml" {
			t.Errorf("%s: got %s:%d:%d path %q, want f.yaml:%d:%d path %q (%s)", tc.name, d.File, d.Line, d.Column, d.Path, tc.line, tc.col, tc.path, d)
		}
	}
}

func TestDiagnosticString(t *testing.T) {
	d := Diagnostic{File: "lifeboat.yaml", Line: 14, Column: 18, Path: "units.storefront.compute.web.standby",
		Severity: SeverityError, Message: `"lukewarm" is not a standby mode`, Hint: "use cold, warm or hot"}
	want := `lifeboat.yaml:14:18: error: units.storefront.compute.web.standby: "lukewarm" is not a standby mode; use cold, warm or hot`
	if got := d.String(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	d = Diagnostic{File: "x.yaml", Severity: SeverityWarning, Message: "m"}
	if got := d.String(); got != "x.yaml: warning: m" {
		t.Errorf("no position, no path, no hint: got %q", got)
	}
	ds := Diagnostics{{Severity: SeverityError}, {Severity: SeverityWarning}, {Severity: SeverityWarning}}
	if !ds.HasErrors() || ds.Errors() != 1 || ds.Warnings() != 2 {
		t.Errorf("counts: errors %d warnings %d", ds.Errors(), ds.Warnings())
	}
	if (Diagnostics{{Severity: SeverityWarning}}).HasErrors() {
		t.Error("warnings alone are not errors")
	}
}

func TestWarningsStillReturnSpec(t *testing.T) {
	src := strings.Replace(minimal, "replication: sync}", "replication: async, lag: 1m}", 1)
	spec, diags := Parse("f.yaml", []byte(src))
	if spec == nil || diags.Warnings() != 1 || diags.HasErrors() {
		t.Fatalf("want a spec and one warning, got spec %v:\n%s", spec != nil, diags)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lifeboat.yaml")
	if err := os.WriteFile(path, []byte(minimal), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, diags, err := Load(path)
	if err != nil || spec == nil || len(diags) != 0 {
		t.Fatalf("Load: %v %v\n%s", spec != nil, err, diags)
	}
	if spec.File != path {
		t.Errorf("File = %q, want %q", spec.File, path)
	}

	missing := filepath.Join(dir, "nope.yaml")
	_, _, err = Load(missing)
	if err == nil || !strings.Contains(err.Error(), missing) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load of a missing file: want an error naming %s and wrapping ErrNotExist, got %v", missing, err)
	}
	if lifeboat.IsRetryable(err) {
		t.Error("a missing spec file is not retryable")
	}

	if err := os.WriteFile(path, []byte("service: [shop\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, diags, err = Load(path)
	if err != nil || spec != nil || diags.Errors() != 1 || diags[0].File != path {
		t.Fatalf("Load of a broken file: want diagnostics naming %s, got %v %v\n%s", path, spec != nil, err, diags)
	}
}

// Parse keeps no shared mutable state: the race detector watches this.
func TestParseConcurrently(t *testing.T) {
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if spec, diags := Parse("f.yaml", []byte(minimal)); spec == nil {
				t.Errorf("unexpected diagnostics:\n%s", diags)
			}
		}()
	}
	wg.Wait()
}

// The committed schema must be what the generator writes now.
func TestSchemaIsUpToDate(t *testing.T) {
	want, err := JSONSchema()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "schema", "lifeboat.schema.json")
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v; run `go generate ./config` to write it", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is out of date with spec.go; run `go generate ./config` and commit the result", path)
	}
}

// The example must validate against the schema: a small structural check
// (fields, required, enums, types) that also proves the schema and the
// decoder agree on every field name.
func TestExampleMatchesSchema(t *testing.T) {
	raw, err := JSONSchema()
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	defs := schema["$defs"].(map[string]any)
	visited := 0
	var walk func(n *yaml.Node, s map[string]any, path string)
	walk = func(n *yaml.Node, s map[string]any, path string) {
		visited++
		if ref, ok := s["$ref"].(string); ok {
			s = defs[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any)
		}
		if enum, ok := s["enum"].([]any); ok && !slices.Contains(enum, any(n.Value)) {
			t.Errorf("%s: %q not in schema enum %v", path, n.Value, enum)
		}
		switch s["type"] {
		case "object":
			if n.Kind != yaml.MappingNode {
				t.Errorf("%s: schema wants an object", path)
				return
			}
			props, _ := s["properties"].(map[string]any)
			seen := map[string]bool{}
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				seen[k] = true
				switch {
				case props != nil && props[k] != nil:
					walk(n.Content[i+1], props[k].(map[string]any), path+"."+k)
				case s["additionalProperties"] == false || s["additionalProperties"] == nil:
					t.Errorf("%s: field %q not allowed by the schema", path, k)
				default:
					walk(n.Content[i+1], s["additionalProperties"].(map[string]any), path+"."+k)
				}
			}
			req, _ := s["required"].([]any)
			for _, r := range req {
				if !seen[r.(string)] {
					t.Errorf("%s: schema requires %s", path, r)
				}
			}
		case "array":
			if n.Kind != yaml.SequenceNode {
				t.Errorf("%s: schema wants an array", path)
				return
			}
			for i, item := range n.Content {
				walk(item, s["items"].(map[string]any), fmt.Sprintf("%s[%d]", path, i))
			}
		case "string", "integer", "boolean":
			if n.Kind != yaml.ScalarNode {
				t.Errorf("%s: schema wants a %s", path, s["type"])
			}
		}
	}
	walk(doc.Content[0], schema, "")
	if visited < 100 {
		t.Errorf("the schema walk visited only %d nodes of the example; it is not checking much", visited)
	}
	// Unknown fields must be flagged by editors.
	if defs["Spec"].(map[string]any)["additionalProperties"] != false {
		t.Error("schema allows unknown top-level fields")
	}
}

func BenchmarkParseExample(b *testing.B) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		Parse("lifeboat.yaml", data)
	}
}

// Valid specs for the traffic drivers 'lifeboat serve' hosts: each must
// parse with no diagnostics at all (no error, no warning).
func TestHostedTrafficSpecsHaveNoDiagnostics(t *testing.T) {
	const head = `service: shop
regions:
  primary: {name: west}
  secondary: {name: east}
  witness: {name: north}
objectives: {rto: 1m, rpo: 5s}
units:
  storefront:
    compute:
      web:
        recipe: {artifact: ./bin/shop, command: [./shop]}
        standby: warm
        instances: {primary: 2, secondary: 2}
    traffic:
      www: {names: [www.shop.example.test, Shop.Example.Test.], target: web}
drivers:
  default: fake
  agent: {url: "http://127.0.0.1:7402"}
`
	for _, tc := range []struct{ name, drivers string }{
		{"dns", `  traffic: dns
  dns:
    zone: shop.example.test.
    listen: 127.0.0.1:5353
    name-servers:
      west: {name: ns-west.shop.example.test, address: 127.0.0.1}
      east: {name: ns-east.shop.example.test, address: "::1"}
      north: {name: ns1.provider.test}
    endpoints:
      west: [127.0.0.1, 127.0.0.11]
      east: ["::1"]
    weights: {west: 3, east: 0}
`},
		{"dns without weights or glue", `  traffic: dns
  dns:
    zone: example.test
    listen: ":5353"
    name-servers:
      west: {name: ns-west.provider.test}
      east: {name: ns-east.provider.test}
    endpoints: {west: [192.0.2.10], east: [198.51.100.10]}
`},
		{"frontdoor", `  traffic: frontdoor
  frontdoor:
    lease: 10s
    hold-timeout: 0s
    listeners:
      http:
        listen: 127.0.0.1:8080
        upstreams: {west: "127.0.0.1:8081", east: "127.0.0.1:8082"}
      postgres:
        listen: "[::1]:5432"
        upstreams: {west: "db-west.internal:5432", east: "[::1]:5433"}
      spare:
        listen: 127.0.0.2:8080
        upstreams: {west: "127.0.0.1:9081", east: "127.0.0.1:9082"}
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, diags := Parse("lifeboat.yaml", []byte(head+tc.drivers))
			if spec == nil || len(diags) != 0 {
				t.Fatalf("want a spec and no diagnostics, got spec %v:\n%s", spec != nil, diags)
			}
		})
	}
}

// A spec with no traffic components does not need the chosen traffic
// driver's section, nor an agent for it.
func TestHostedTrafficWithoutTrafficComponents(t *testing.T) {
	for _, driver := range []string{"dns", "frontdoor"} {
		src := strings.Replace(minimal, "    traffic:\n      www:\n        names: [shop.example.test]\n        target: web\n", "", 1) +
			"drivers:\n  default: fake\n  traffic: " + driver + "\n"
		if spec, diags := Parse("f.yaml", []byte(src)); spec == nil || len(diags) != 0 {
			t.Errorf("traffic: %s with no traffic components: want no diagnostics, got:\n%s", driver, diags)
		}
	}
}

func TestDomainProblem(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"shop.example.test", true},
		{"shop.example.test.", true},
		{"_dmarc.example.test", true},
		{"xn--bcher-kva.example", true},
		{"", false},
		{".", false},
		{"shop..test", false},
		{"shop example.test", false},
		{"-shop.test", false},
		{"shop.test:53", false},
		{"192.0.2.1", false},
		{strings.Repeat("a", 64) + ".test", false},
	} {
		if got := domainProblem(tc.name); (got == "") != tc.ok {
			t.Errorf("domainProblem(%q) = %q, want ok %v", tc.name, got, tc.ok)
		}
	}
	if !inZone("WWW.Shop.example.test", "shop.example.test.") || !inZone("shop.example.test.", "shop.example.test") || inZone("xshop.example.test", "shop.example.test") {
		t.Error("inZone must ignore case and the trailing dot, and compare whole labels")
	}
}
