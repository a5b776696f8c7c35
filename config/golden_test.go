package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/broken")

// TestBroken parses each testdata/broken/NN-name.yaml and compares every
// diagnostic with NN-name.golden. `go test ./config -run TestBroken -update`
// rewrites the goldens; review the diff by eye: it is what a person reads.
func TestBroken(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "broken", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 30 {
		t.Fatalf("want at least 30 broken specs, found %d", len(files))
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			spec, diags := Parse(filepath.Base(file), data)
			if len(diags) == 0 {
				t.Fatalf("%s: no diagnostics; a broken spec must produce at least one", file)
			}
			if diags.HasErrors() != (spec == nil) {
				t.Errorf("spec is nil: %v, errors: %d; want a spec exactly when there are no errors", spec == nil, diags.Errors())
			}
			for i := 1; i < len(diags); i++ {
				a, b := diags[i-1], diags[i]
				if a.Line > b.Line || (a.Line == b.Line && a.Column > b.Column) {
					t.Errorf("diagnostics out of order: %s before %s", a, b)
				}
			}
			got := diags.String()
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v; run `go test ./config -run TestBroken -update` to create it", err)
			}
			if got != string(want) {
				t.Errorf("diagnostics of %s differ from %s (rerun with -update and review the diff)\n--- got\n%s--- want\n%s", file, golden, got, want)
			}
		})
	}
}
