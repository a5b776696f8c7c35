package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// Parse decodes and checks a spec. file names the spec in diagnostics.
// The spec is nil when there are errors; warnings alone still return it.
func Parse(file string, data []byte) (*lifeboat.Spec, Diagnostics) {
	d := newDecoder(file)
	var spec lifeboat.Spec
	if root := d.document(data); root != nil {
		d.decode(root, reflect.ValueOf(&spec).Elem(), "", "", nil)
		check(d, &spec)
	}
	d.diags.sortByPosition()
	d.diags = d.diags.dedupe()
	if d.diags.HasErrors() {
		return nil, d.diags
	}
	spec.File = file
	return &spec, d.diags
}

// Load reads and parses the spec at path. The error is for a file that
// cannot be read; problems in the spec are diagnostics.
func Load(path string) (*lifeboat.Spec, Diagnostics, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, lifeboat.Permanent("load spec", path,
			fmt.Errorf("%w; check the path (lifeboat looks for lifeboat.yaml in the current directory unless told otherwise) and that the file is readable", err))
	}
	spec, diags := Parse(path, data)
	if spec != nil {
		spec.File = path
	}
	return spec, diags, nil
}

// document parses the YAML text and returns the root node, or nil after
// reporting why there is none.
func (d *decoder) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if errors.Is(err, io.EOF) || (err == nil && len(doc.Content) == 0) {
		d.add(&yaml.Node{Line: 1, Column: 1}, SeverityError, "", "the spec is empty",
			"a spec needs service, regions, objectives and units; start from examples/script/lifeboat.yaml")
		return nil
	}
	if err != nil {
		d.syntaxError(data, err)
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.syntaxError(data, err)
	default:
		at := &yaml.Node{Line: next.Line, Column: next.Column}
		if len(next.Content) > 0 {
			at = next.Content[0]
		}
		d.add(at, SeverityError, "", "a second YAML document starts here; a spec is one document",
			`remove the "---" line and what follows, or move it to its own file`)
	}
	return doc.Content[0]
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError reports a YAML syntax error. yaml.v3 reports only the line,
// so the column is where that line's text starts (or its first tab, the
// usual culprit), which is where a person looks first anyway.
func (d *decoder) syntaxError(data []byte, err error) {
	line, msg := splitYAMLError(err)
	lines := strings.Split(string(data), "\n")
	if l := firstBadLine(lines, msg); l > 0 {
		line = l
	}
	text, col := "", 0
	if line >= 1 && line <= len(lines) {
		text = lines[line-1]
		col = len(text) - len(strings.TrimLeft(text, " \t")) + 1
	}
	hint := ""
	switch {
	case strings.Contains(text, "\t") && strings.Contains(msg, "cannot start any token"):
		col = strings.IndexByte(text, '\t') + 1
		msg = "a tab character is not allowed here"
		hint = "indent with spaces; YAML does not allow tabs for indentation"
	case strings.Contains(msg, "mapping values are not allowed"):
		hint = `put the value in quotes if it contains ": ", or check the indentation`
	case strings.Contains(msg, "did not find expected key"), strings.Contains(msg, "did not find expected '-' indicator"):
		hint = "check the indentation of this line against the lines above it"
	case strings.Contains(msg, "could not find expected ':'"):
		hint = "write each field as key: value, and quote values that span lines"
	case strings.Contains(msg, "unknown anchor"):
		hint = "define the anchor (&name) before using it (*name)"
	case strings.Contains(msg, "did not find expected"), strings.Contains(msg, "found unexpected end of stream"):
		hint = "a quote, bracket or brace is probably not closed"
	}
	diag := Diagnostic{File: d.file, Line: line, Column: col, Severity: SeverityError,
		Message: "YAML syntax error: " + msg, Hint: hint}
	d.diags = append(d.diags, diag)
}

func splitYAMLError(err error) (line int, msg string) {
	msg = strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	return line, msg
}

// maxPrefixLines bounds firstBadLine's work on huge files.
const maxPrefixLines = 2000

// firstBadLine finds the line a YAML syntax error is on. yaml.v3 reports
// the line where the enclosing block or list started (and off by one for
// parser errors), which can be far from the mistake; the first prefix of
// the file that fails with the same problem ends on the offending line.
// Returns 0 when no prefix does (then yaml.v3's line is the best guess).
func firstBadLine(lines []string, msg string) int {
	if len(lines) > maxPrefixLines {
		return 0
	}
	for n := 1; n <= len(lines); n++ {
		var node yaml.Node
		dec := yaml.NewDecoder(strings.NewReader(strings.Join(lines[:n], "\n")))
		for {
			err := dec.Decode(&node)
			if err == nil {
				continue
			}
			if !errors.Is(err, io.EOF) {
				if _, m := splitYAMLError(err); m == msg {
					return n
				}
			}
			break
		}
	}
	return 0
}
