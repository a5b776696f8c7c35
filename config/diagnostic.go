// Package config reads lifeboat.yaml into a lifeboat.Spec and checks it,
// reporting every problem at once with its file:line:column, the field path,
// what is wrong and how to fix it.
//
// The decoder walks the YAML node tree against the root package's Go types
// by reflection on their `yaml` and `jsonschema` struct tags, so a field
// added to spec.go is decoded, required and enum-checked with no change
// here; the same tags generate the JSON Schema (schema/lifeboat.schema.json).
package config

import (
	"fmt"
	"sort"
	"strings"
)

// Severity of a diagnostic: an error makes the spec unusable; a warning is
// a spec that works but probably not as its owners expect.
type Severity string

const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// Diagnostic is one problem found in a spec.
type Diagnostic struct {
	File         string
	Line, Column int
	// Path is the field path, like "units.storefront.compute.web.standby".
	Path     string
	Severity Severity
	// Message says what is wrong.
	Message string
	// Hint says how to fix it ("" if there is nothing useful to say).
	Hint string
}

// String formats the diagnostic the way compilers do, so editors and
// terminals can jump to it:
//
//	lifeboat.yaml:14:18: error: units.storefront.compute.web.standby: "lukewarm" is not a standby mode; use cold, warm or hot
func (d Diagnostic) String() string {
	var b strings.Builder
	if d.File != "" {
		b.WriteString(d.File)
		b.WriteString(":")
	}
	if d.Line > 0 {
		fmt.Fprintf(&b, "%d:%d:", d.Line, d.Column)
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	b.WriteString(string(d.Severity))
	b.WriteString(": ")
	if d.Path != "" {
		b.WriteString(d.Path)
		b.WriteString(": ")
	}
	b.WriteString(d.Message)
	if d.Hint != "" {
		b.WriteString("; ")
		b.WriteString(d.Hint)
	}
	return b.String()
}

// Diagnostics are the problems of one spec, sorted by line and column.
type Diagnostics []Diagnostic

// HasErrors reports whether any diagnostic is an error.
func (ds Diagnostics) HasErrors() bool { return ds.Errors() > 0 }

// Errors counts the errors.
func (ds Diagnostics) Errors() int { return ds.count(SeverityError) }

// Warnings counts the warnings.
func (ds Diagnostics) Warnings() int { return ds.count(SeverityWarning) }

func (ds Diagnostics) count(s Severity) int {
	n := 0
	for _, d := range ds {
		if d.Severity == s {
			n++
		}
	}
	return n
}

// String prints one diagnostic per line.
func (ds Diagnostics) String() string {
	var b strings.Builder
	for _, d := range ds {
		b.WriteString(d.String())
		b.WriteString("\n")
	}
	return b.String()
}

// sortByPosition orders by line and column; problems found at the same
// place keep the order they were found in (field order), which reads
// naturally.
func (ds Diagnostics) sortByPosition() {
	sort.SliceStable(ds, func(i, j int) bool {
		if ds[i].Line != ds[j].Line {
			return ds[i].Line < ds[j].Line
		}
		return ds[i].Column < ds[j].Column
	})
}

// dedupe drops a diagnostic that repeats an earlier one at the same place:
// a mistake in a YAML anchor shows up once for every alias of it, and
// fixing the anchor fixes them all.
func (ds Diagnostics) dedupe() Diagnostics {
	type at struct {
		line, col int
		msg       string
	}
	seen := map[at]bool{}
	out := ds[:0]
	for _, d := range ds {
		k := at{d.Line, d.Column, d.Message}
		if d.Line > 0 && seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, d)
	}
	return out
}
