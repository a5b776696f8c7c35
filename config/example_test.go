package config

import (
	"path/filepath"
	"testing"
)

// The shipped example must stay valid; its warnings are shown so a change
// that adds one is noticed in review.
func TestExampleSpecParses(t *testing.T) {
	path := filepath.Join("..", "examples", "script", "lifeboat.yaml")
	spec, diags, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diags {
		t.Log(d)
	}
	if diags.HasErrors() || spec == nil {
		t.Fatalf("%s has %d errors:\n%s", path, diags.Errors(), diags)
	}
	if spec.File != path {
		t.Errorf("spec.File = %q, want %q", spec.File, path)
	}
	if got := spec.Units["storefront"].Compute["web"].Boot.D().String(); got != "20s" {
		t.Errorf("storefront web boot = %s, want 20s", got)
	}
	if spec.Drivers.Script == nil || len(spec.Drivers.Script.Actions) != 14 {
		t.Errorf("drivers.script.actions not decoded: %+v", spec.Drivers.Script)
	}
}
