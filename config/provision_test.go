package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A relative provision program is looked for next to the spec file, not
// in the current directory: present there, no warning.
func TestProvisionProgramNextToSpec(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "broken", "86-tenants-no-provision.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "lifeboat.yaml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	check := func(wantWarning bool) {
		t.Helper()
		spec, diags, err := Load(path)
		if err != nil || spec == nil {
			t.Fatalf("Load: %v\n%s", err, diags)
		}
		if got := strings.Contains(diags.String(), "no-such-pool.sh does not exist next to the spec file lifeboat.yaml"); got != wantWarning {
			t.Errorf("warning about the missing program: %v, want %v:\n%s", got, wantWarning, diags)
		}
		if spec.Tenants.Pools["free"].Provision == nil || spec.Tenants.Pools["free"].Provision.Create[0] != "./scripts/no-such-pool.sh" {
			t.Errorf("provision not decoded: %+v", spec.Tenants.Pools["free"])
		}
	}
	check(true)
	if err := os.MkdirAll(filepath.Join(dir, "scripts"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "scripts", "no-such-pool.sh"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	check(false)
}
