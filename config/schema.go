package config

//go:generate go run ../schema/gen.go -o ../schema/lifeboat.schema.json

import (
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/invopop/jsonschema"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// SchemaID is the $id of the generated schema.
const SchemaID = "https://github.com/lifeboat-dr/lifeboat/schema/lifeboat.schema.json"

// JSONSchema returns the JSON Schema of lifeboat.yaml, generated from the
// root Spec type's yaml and jsonschema tags (the same tags the decoder
// reads). Unknown fields are not allowed, so editors flag them as typos.
// schema/lifeboat.schema.json is this output; `go generate ./config`
// rewrites it.
func JSONSchema() ([]byte, error) {
	var duration jsonschema.Schema
	// Duration describes its own schema (a Go duration string); it returns
	// raw JSON, which the reflector does not pick up by itself.
	if err := json.Unmarshal(lifeboat.Duration(0).JSONSchema(), &duration); err != nil {
		return nil, fmt.Errorf("read the schema of lifeboat.Duration: %w", err)
	}
	r := &jsonschema.Reflector{
		FieldNameTag:               "yaml",
		RequiredFromJSONSchemaTags: true,
		AllowAdditionalProperties:  false,
		Mapper: func(t reflect.Type) *jsonschema.Schema {
			if t == durationType {
				s := duration
				return &s
			}
			return nil
		},
	}
	s := r.Reflect(&lifeboat.Spec{})
	s.ID = SchemaID
	s.Title = "lifeboat.yaml"
	s.Description = "A service as Lifeboat sees it: regions, objectives, deployment units, tenants, hooks and drivers."
	out, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("marshal the JSON Schema: %w", err)
	}
	return append(out, '\n'), nil
}
