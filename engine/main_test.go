package engine

import (
	"os"
	"testing"
)

// TestMain lets the test binary double as the crash test's child process.
func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) == "1" {
		os.Exit(crashChild())
	}
	os.Exit(m.Run())
}
