package config

import (
	"encoding"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"github.com/agnivade/levenshtein"
	"gopkg.in/yaml.v3"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// decoder walks a YAML node tree against a Go type, filling the value and
// recording where every field was written, so that later checks can point
// at the offending line. It never stops at the first problem.
type decoder struct {
	file  string
	diags Diagnostics
	// vals and keys hold the value node and the key node of each path.
	vals map[string]*yaml.Node
	keys map[string]*yaml.Node
	// bad holds the paths that failed to decode (or are missing), so that
	// semantic checks do not pile a second, confusing error on top.
	bad map[string]bool
}

func newDecoder(file string) *decoder {
	return &decoder{file: file, vals: map[string]*yaml.Node{}, keys: map[string]*yaml.Node{}, bad: map[string]bool{}}
}

func (d *decoder) add(n *yaml.Node, sev Severity, path, msg, hint string) {
	diag := Diagnostic{File: d.file, Path: path, Severity: sev, Message: msg, Hint: hint}
	if n != nil {
		diag.Line, diag.Column = n.Line, n.Column
	}
	d.diags = append(d.diags, diag)
}

// fail records an error at node n and marks path as bad.
func (d *decoder) fail(n *yaml.Node, path, msg, hint string) {
	d.bad[path] = true
	d.add(n, SeverityError, path, msg, hint)
}

// isBad reports whether path or one of its ancestors failed to decode.
func (d *decoder) isBad(path string) bool {
	for p := path; ; p = parentPath(p) {
		if d.bad[p] {
			return true
		}
		if p == "" {
			return false
		}
	}
}

// node returns the node to point at for path: its key when key is true
// (names of units and components), else its value; falling back to the
// nearest ancestor that was written.
func (d *decoder) node(path string, key bool) *yaml.Node {
	for p := path; ; p = parentPath(p) {
		first, second := d.vals, d.keys
		if key {
			first, second = d.keys, d.vals
		}
		if n := first[p]; n != nil {
			return n
		}
		if n := second[p]; n != nil {
			return n
		}
		if p == "" {
			return nil
		}
	}
}

// parentPath strips the last element of a path: "a.b[2]" → "a.b", "a.b" → "a".
func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// field is a struct field as the YAML and the schema see it.
type field struct {
	name     string // YAML key
	index    int
	required bool
	enum     []string
	pattern  string
	minimum  *int64
	minItems int
	parent   reflect.Type // the struct the field belongs to
}

// fieldCache holds fieldsOf's answers; specs may be parsed concurrently.
var fieldCache sync.Map // reflect.Type → []field

// fieldsOf reads the yaml and jsonschema tags of t's fields. Required-ness,
// enums, patterns and minimums live in the jsonschema tags so that the
// decoder and the generated schema can never disagree.
func fieldsOf(t reflect.Type) []field {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.([]field)
	}
	var fs []field
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		f := field{name: name, index: i, parent: t}
		for _, part := range splitSchemaTag(sf.Tag.Get("jsonschema")) {
			k, v, _ := strings.Cut(part, "=")
			switch k {
			case "required":
				f.required = true
			case "enum":
				f.enum = append(f.enum, v)
			case "pattern":
				f.pattern = v
			case "minimum":
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					f.minimum = &n
				}
			case "minItems":
				f.minItems, _ = strconv.Atoi(v)
			}
		}
		fs = append(fs, f)
	}
	fieldCache.Store(t, fs)
	return fs
}

// splitSchemaTag splits a jsonschema tag on commas, except commas escaped
// as `\,` (invopop/jsonschema's convention, used in descriptions).
func splitSchemaTag(tag string) []string {
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(tag); i++ {
		switch {
		case tag[i] == '\\' && i+1 < len(tag) && tag[i+1] == ',':
			cur.WriteByte(',')
			i++
		case tag[i] == ',':
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(tag[i])
		}
	}
	if cur.Len() > 0 {
		parts = append(parts, cur.String())
	}
	return parts
}

var (
	textUnmarshaler = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
	durationType    = reflect.TypeOf(lifeboat.Duration(0))
)

// decode fills v from n. key is the YAML key (or map key) n was written
// under, used in hints; f is the struct field's tags (nil for map values
// and list items).
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path, key string, f *field) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	d.vals[path] = n
	if isNull(n) {
		return // an empty value leaves the zero value; required fields are checked by the caller
	}
	t := v.Type()
	if t == durationType {
		d.decodeDuration(n, v, path)
		return
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, fmt.Sprintf("expected %s, got %s", expected(t), describe(n)), "")
			return
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.Value)); err != nil {
			d.fail(n, path, err.Error(), "")
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		d.decode(n, v.Elem(), path, key, f)
	case reflect.Struct:
		d.decodeStruct(n, v, path, key)
	case reflect.Map:
		d.decodeMap(n, v, path, key)
	case reflect.Slice:
		d.decodeSlice(n, v, path, key, f)
	case reflect.String:
		d.decodeString(n, v, path, key, f)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		d.decodeInt(n, v, path, f)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.fail(n, path, fmt.Sprintf("expected true or false, got %s", describe(n)), "")
			return
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			d.fail(n, path, fmt.Sprintf("expected true or false, got %s", describe(n)), "")
			return
		}
		v.SetBool(b)
	default:
		// Only reachable when spec.go gains a kind of field this decoder
		// does not know yet: a bug to fix here, not in the user's spec.
		d.fail(n, path, fmt.Sprintf("lifeboat cannot read a %s field yet", t), "this is a bug in lifeboat's config package; please report it")
	}
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func (d *decoder) decodeDuration(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, fmt.Sprintf("expected a duration such as 30s or 5m, got %s", describe(n)), "write it like 30s, 5m or 1h30m")
		return
	}
	var dur lifeboat.Duration
	if err := dur.UnmarshalText([]byte(n.Value)); err != nil {
		if _, numErr := strconv.ParseFloat(n.Value, 64); numErr == nil {
			// A bare number is the most common slip: say which unit is missing.
			d.fail(n, path, fmt.Sprintf("%s is not a duration: it has no unit", n.Value),
				fmt.Sprintf("write %ss for seconds or %sm for minutes (units: ms, s, m, h)", n.Value, n.Value))
			return
		}
		d.fail(n, path, fmt.Sprintf("%q is not a duration", n.Value), "write it like 30s, 5m or 1h30m")
		return
	}
	if dur < 0 {
		d.fail(n, path, fmt.Sprintf("%s is a negative duration", n.Value), "use 0s or more")
		return
	}
	v.Set(reflect.ValueOf(dur))
}

// entries returns the key and value nodes of a mapping, with YAML merge
// keys ("<<: *defaults") expanded: keys written in the mapping itself win
// over merged ones.
func entries(n *yaml.Node) [][2]*yaml.Node {
	var own, merged [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			var sources []*yaml.Node
			if v.Kind == yaml.SequenceNode {
				sources = v.Content
			} else {
				sources = []*yaml.Node{v}
			}
			for _, s := range sources {
				if s.Kind == yaml.AliasNode {
					s = s.Alias
				}
				if s != nil && s.Kind == yaml.MappingNode {
					merged = append(merged, entries(s)...)
				}
			}
			continue
		}
		own = append(own, [2]*yaml.Node{k, v})
	}
	if len(merged) == 0 {
		return own
	}
	seen := map[string]bool{}
	for _, e := range own {
		seen[e[0].Value] = true
	}
	out := own
	for _, e := range merged {
		if !seen[e[0].Value] {
			seen[e[0].Value] = true
			out = append(out, e)
		}
	}
	return out
}

// mappingKeys checks the keys of a mapping (plain, not duplicated) and
// returns the good entries.
func (d *decoder) mappingKeys(n *yaml.Node, path string) [][2]*yaml.Node {
	var good [][2]*yaml.Node
	seen := map[string]*yaml.Node{}
	for _, e := range entries(n) {
		k := e[0]
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, fmt.Sprintf("a key must be a plain name, got %s", describe(k)), "write keys as name: value")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.fail(k, joinPath(path, k.Value), fmt.Sprintf("duplicate key %q: it is already set at line %d", k.Value, first.Line),
				"remove one of the two, or merge them")
			continue
		}
		seen[k.Value] = k
		good = append(good, e)
	}
	return good
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path, key string) {
	t := v.Type()
	fs := fieldsOf(t)
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, fmt.Sprintf("expected a mapping with fields such as %s, got %s", fieldList(fs, 3), describe(n)), structHint(fs, n, key))
		return
	}
	byName := map[string]*field{}
	for i := range fs {
		byName[fs[i].name] = &fs[i]
	}
	set := map[string]bool{}
	// A typo of a required field is reported once, as the typo.
	typoOf := map[string]bool{}
	for _, e := range d.mappingKeys(n, path) {
		k, val := e[0], e[1]
		p := joinPath(path, k.Value)
		f := byName[k.Value]
		if f == nil {
			if m := didYouMean(k.Value, names(fs)); m != "" {
				typoOf[m] = true
			}
			d.fail(k, p, fmt.Sprintf("unknown field %q", k.Value), unknownHint(k.Value, names(fs)))
			continue
		}
		d.keys[p] = k
		set[k.Value] = !isNull(resolve(val))
		d.decode(val, v.Field(f.index), p, k.Value, f)
	}
	for _, f := range fs {
		if !f.required || set[f.name] {
			continue
		}
		p := joinPath(path, f.name)
		if typoOf[f.name] {
			d.bad[p] = true
			continue
		}
		if k, written := d.keys[p]; written {
			hint := fmt.Sprintf("write a value after %s:", f.name)
			if len(f.enum) > 0 {
				hint = fmt.Sprintf("set it to %s", orList(f.enum))
			}
			d.fail(k, p, fmt.Sprintf("%s has no value", f.name), hint)
			continue
		}
		at := d.keys[path] // the parent's key reads best ("web:"), else the mapping itself
		if at == nil {
			at = n
		}
		where := "at the top level"
		if key != "" {
			where = fmt.Sprintf("under %s", key)
		}
		hint := fmt.Sprintf("add %s: %s", f.name, where)
		switch len(f.enum) {
		case 0:
		case 1:
			hint = fmt.Sprintf("add %s: %s %s", f.name, f.enum[0], where)
		default:
			hint = fmt.Sprintf("add %s: %s, set to %s", f.name, where, orList(f.enum))
		}
		d.fail(at, p, fmt.Sprintf("required field %s is missing", f.name), hint)
	}
}

func resolve(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path, key string) {
	t := v.Type()
	if t.Key().Kind() != reflect.String {
		d.fail(n, path, fmt.Sprintf("lifeboat cannot read a %s field yet", t), "this is a bug in lifeboat's config package; please report it")
		return
	}
	if n.Kind != yaml.MappingNode {
		hint := fmt.Sprintf("write each entry on its own line under %s: as name: value", key)
		if t.Elem().Kind() == reflect.Struct {
			hint = fmt.Sprintf("write each entry under %s: as its name followed by its indented fields", key)
		}
		d.fail(n, path, fmt.Sprintf("expected a mapping of names to %s, got %s", plural(t.Elem()), describe(n)), hint)
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(t))
	}
	for _, e := range d.mappingKeys(n, path) {
		k, val := e[0], e[1]
		p := joinPath(path, k.Value)
		d.keys[p] = k
		elem := reflect.New(t.Elem()).Elem()
		d.decode(val, elem, p, k.Value, nil)
		v.SetMapIndex(reflect.ValueOf(k.Value).Convert(t.Key()), elem)
	}
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path, key string, f *field) {
	t := v.Type()
	if n.Kind != yaml.SequenceNode {
		hint := fmt.Sprintf("write %s: [a, b], or one \"- item\" per line", key)
		switch {
		case n.Kind == yaml.ScalarNode:
			hint = fmt.Sprintf("write %s: [%s]", key, flowList(n.Value))
		case t.Elem().Kind() == reflect.Struct:
			hint = fmt.Sprintf("write each entry of %s as a list item starting with \"- \"", key)
		}
		d.fail(n, path, fmt.Sprintf("expected a list of %s, got %s", plural(t.Elem()), describe(n)), hint)
		return
	}
	s := reflect.MakeSlice(t, 0, len(n.Content))
	for i, item := range n.Content {
		elem := reflect.New(t.Elem()).Elem()
		d.decode(item, elem, fmt.Sprintf("%s[%d]", path, i), key, nil)
		s = reflect.Append(s, elem)
	}
	v.Set(s)
	if f != nil && len(n.Content) < f.minItems {
		hint := "add at least one entry"
		if f.minItems > 1 {
			hint = fmt.Sprintf("add at least %d entries", f.minItems)
		}
		d.fail(n, path, fmt.Sprintf("%s is empty", key), hint)
	}
}

func (d *decoder) decodeString(n *yaml.Node, v reflect.Value, path, key string, f *field) {
	if n.Kind != yaml.ScalarNode {
		hint := "write a single value"
		if n.Kind == yaml.MappingNode {
			hint = `put the value in quotes if it contains ": "`
		}
		d.fail(n, path, fmt.Sprintf("expected a string, got %s", describe(n)), hint)
		return
	}
	v.SetString(n.Value)
	if f == nil {
		return
	}
	switch {
	case f.required && n.Value == "":
		d.fail(n, path, fmt.Sprintf("%s is empty", key), fmt.Sprintf("give %s a value", key))
	case len(f.enum) > 0 && !contains(f.enum, n.Value):
		d.fail(n, path, fmt.Sprintf("%q is not %s", n.Value, enumNoun(v.Type(), f.parent, key)), "use "+orList(f.enum))
	case f.pattern != "" && n.Value != "":
		re, err := regexp.Compile(f.pattern)
		if err == nil && !re.MatchString(n.Value) {
			msg, hint := patternProblem(f.pattern, key, n.Value)
			d.fail(n, path, msg, hint)
		}
	}
}

func (d *decoder) decodeInt(n *yaml.Node, v reflect.Value, path string, f *field) {
	var i int64
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&i) != nil {
		d.fail(n, path, fmt.Sprintf("expected a whole number, got %s", describe(n)), "")
		return
	}
	if v.OverflowInt(i) {
		d.fail(n, path, fmt.Sprintf("%d is too large", i), "")
		return
	}
	v.SetInt(i)
	if f != nil && f.minimum != nil && i < *f.minimum {
		msg := fmt.Sprintf("%d is less than %d", i, *f.minimum)
		if *f.minimum == 0 {
			msg = fmt.Sprintf("%d is negative", i)
		}
		d.fail(n, path, msg, fmt.Sprintf("use %d or more", *f.minimum))
	}
}

// describe says what a node is, for "expected X, got Y".
func describe(n *yaml.Node) string {
	n = resolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "nothing"
		case "!!int", "!!float":
			return "the number " + n.Value
		case "!!bool":
			return n.Value
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// expected names what a Go type looks like in YAML.
func expected(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration such as 30s"
	case t.Kind() == reflect.Pointer:
		return expected(t.Elem())
	case t.Kind() == reflect.Struct, t.Kind() == reflect.Map:
		return "a mapping"
	case t.Kind() == reflect.Slice:
		return "a list of " + plural(t.Elem())
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Bool:
		return "true or false"
	}
	return "a number"
}

func plural(t reflect.Type) string {
	switch {
	case t == durationType:
		return "durations"
	case t.Kind() == reflect.Pointer:
		return plural(t.Elem())
	case t.Kind() == reflect.Struct:
		return "definitions"
	case t.Kind() == reflect.Map:
		return "mappings"
	case t.Kind() == reflect.Slice:
		return "lists"
	case t.Kind() == reflect.String:
		return "strings"
	case t.Kind() == reflect.Bool:
		return "booleans"
	}
	return "numbers"
}

// structHint suggests how to write a mapping where something else was
// written; the common case is `primary: west` for `primary: {name: west}`.
func structHint(fs []field, n *yaml.Node, key string) string {
	if key == "" {
		return "a spec is a mapping with service:, regions:, objectives: and units: at the top level; start from examples/script/lifeboat.yaml"
	}
	var req []field
	for _, f := range fs {
		if f.required {
			req = append(req, f)
		}
	}
	if n.Kind == yaml.ScalarNode && len(req) == 1 {
		return fmt.Sprintf("write %s: {%s: %s}", key, req[0].name, n.Value)
	}
	if n.Kind == yaml.SequenceNode && len(req) == 1 && len(n.Content) == 1 && n.Content[0].Kind == yaml.ScalarNode {
		return fmt.Sprintf("write %s: {%s: %s}", key, req[0].name, n.Content[0].Value)
	}
	if n.Kind == yaml.SequenceNode {
		return fmt.Sprintf("write the fields of %s as indented field: value lines, without dashes", key)
	}
	return fmt.Sprintf("write the fields of %s as indented field: value lines", key)
}

func names(fs []field) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.name
	}
	return out
}

func fieldList(fs []field, max int) string {
	ns := names(fs)
	if len(ns) > max {
		ns = ns[:max]
	}
	return strings.Join(ns, ", ")
}

// didYouMean returns the candidate closest to s if it is close enough to
// be a typo: an edit distance of at most a third of the word (at least 2).
func didYouMean(s string, candidates []string) string {
	best, bestDist := "", -1
	for _, c := range candidates {
		dist := levenshtein.ComputeDistance(strings.ToLower(s), c)
		if bestDist < 0 || dist < bestDist {
			best, bestDist = c, dist
		}
	}
	limit := max(2, len(s)/3)
	if bestDist < 0 || bestDist > limit || bestDist >= len(s) {
		return ""
	}
	return best
}

func unknownHint(s string, valid []string) string {
	if m := didYouMean(s, valid); m != "" {
		return fmt.Sprintf("did you mean %s?", m)
	}
	return "valid fields here: " + strings.Join(valid, ", ")
}

// enumNoun names the kind of value an enum holds, from its Go type:
// StandbyMode → "a standby mode", DRMode → "a DR mode". Plain strings
// have no type name to use, so the key names them.
func enumNoun(t, parent reflect.Type, key string) string {
	if t.PkgPath() == "" || t.Name() == "" {
		// DriverSpec's fields all name a driver; elsewhere the key does.
		if parent != nil && strings.HasSuffix(parent.Name(), "Spec") {
			key = strings.ToLower(strings.TrimSuffix(parent.Name(), "Spec"))
		}
		return "a supported " + key
	}
	if noun, ok := nounOverrides[t.Name()]; ok {
		return article(noun) + " " + noun
	}
	var words []string
	rs := []rune(t.Name())
	start := 0
	for i := 1; i <= len(rs); i++ {
		// A word ends before an upper-case letter that follows a lower-case
		// one, or that starts a new word after an acronym ("DRMode").
		if i == len(rs) || (unicode.IsUpper(rs[i]) && (unicode.IsLower(rs[i-1]) || (i+1 < len(rs) && unicode.IsLower(rs[i+1])))) {
			w := string(rs[start:i])
			if len(w) > 1 && strings.ToUpper(w) == w {
				words = append(words, w) // keep acronyms: DR
			} else {
				words = append(words, strings.ToLower(w))
			}
			start = i
		}
	}
	noun := strings.Join(words, " ")
	return article(noun) + " " + noun
}

// nounOverrides name types whose Go name reads badly in a sentence.
var nounOverrides = map[string]string{
	"Replication":    "replication mode",
	"Purpose":        "unit purpose",
	"TenantStrategy": "tenant recovery strategy",
}

func article(noun string) string {
	if noun != "" && strings.ContainsRune("aeio", rune(noun[0])) {
		return "an"
	}
	return "a"
}

func orList(vs []string) string {
	switch len(vs) {
	case 0:
		return ""
	case 1:
		return vs[0]
	}
	return strings.Join(vs[:len(vs)-1], ", ") + " or " + vs[len(vs)-1]
}

func andList(vs []string) string {
	switch len(vs) {
	case 0:
		return ""
	case 1:
		return vs[0]
	}
	return strings.Join(vs[:len(vs)-1], ", ") + " and " + vs[len(vs)-1]
}

func contains(vs []string, s string) bool {
	for _, v := range vs {
		if v == s {
			return true
		}
	}
	return false
}

// patternProblem explains a value that does not match a jsonschema
// pattern in words; the regular expression is the fallback.
func patternProblem(pattern, key, value string) (msg, hint string) {
	switch pattern {
	case `^[a-z][a-z0-9]*$`:
		return fmt.Sprintf("%s %q must be lower-case letters and digits, starting with a letter", key, value),
			suggestName(value, "it is the first part of every resource name (<service>-<unit>-<component>-<region>)")
	case `^[a-z][a-z0-9-]*$`:
		hint := ""
		if s := strings.Trim(regexp.MustCompile(`[^a-z0-9-]+`).ReplaceAllString(strings.ToLower(value), "-"), "-"); s != "" && s[0] >= 'a' && s[0] <= 'z' {
			hint = fmt.Sprintf("rename it, e.g. %s", s)
		}
		return fmt.Sprintf("%s %q must be lower-case letters, digits and dashes, starting with a letter", key, value), hint
	case `^https?://`:
		return fmt.Sprintf("%q is not an http:// or https:// URL", value), "write the agent's address with its scheme, e.g. http://" + value
	case `^sha256:[0-9a-f]{64}$`:
		return fmt.Sprintf("%q is not a sha256 checksum", value), "write sha256: followed by the 64 lower-case hex digits that sha256sum prints"
	}
	return fmt.Sprintf("%q does not match the pattern %s", value, pattern), ""
}

// suggestName proposes a valid name from an invalid one ("Order-API" →
// "orderapi") when one can be made.
func suggestName(value, why string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(value) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	s := b.String()
	if s != "" && s[0] >= 'a' && s[0] <= 'z' {
		return fmt.Sprintf("%s; rename it, e.g. %s", why, s)
	}
	return why
}

// flowList writes a string as the YAML flow list a person most likely
// meant: "./shop --listen :8080" → ./shop, --listen, ":8080".
func flowList(s string) string {
	words := strings.Fields(s)
	for i, w := range words {
		if strings.ContainsAny(w, ":#,[]{}&*!|>'\"%@`") {
			words[i] = strconv.Quote(w)
		}
	}
	return strings.Join(words, ", ")
}
