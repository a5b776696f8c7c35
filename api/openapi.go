package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3gen"
)

var (
	docOnce sync.Once
	docJSON []byte
	docErr  error
)

var pathParam = regexp.MustCompile(`\{([a-z]+)\}`)

// OpenAPI builds the OpenAPI 3 document from the route table and the Go
// types of the bodies, so it cannot drift from what the server serves.
func (s *Server) OpenAPI() (*openapi3.T, error) {
	doc := &openapi3.T{
		OpenAPI: "3.0.3",
		Info: &openapi3.Info{Title: "lifeboat", Version: "v1",
			Description: "The API of 'lifeboat serve'. Authenticate with Authorization: Bearer <token> (roles viewer < operator < admin). Long operations answer 202 with the run to follow at Location; errors are {error, hint}."},
		Paths:      openapi3.NewPaths(),
		Components: &openapi3.Components{Schemas: openapi3.Schemas{}, SecuritySchemes: openapi3.SecuritySchemes{}},
	}
	doc.Components.SecuritySchemes["bearer"] = &openapi3.SecuritySchemeRef{Value: openapi3.NewJWTSecurityScheme().WithBearerFormat("opaque")}
	gen := openapi3gen.NewGenerator()
	schema := func(v any) (*openapi3.SchemaRef, error) {
		return gen.NewSchemaRefForValue(v, doc.Components.Schemas)
	}
	errRef, err := schema(Error{})
	if err != nil {
		return nil, fmt.Errorf("openapi: schema of Error: %w", err)
	}
	for _, rt := range s.routes {
		op := openapi3.NewOperation()
		op.Summary = rt.Summary
		op.OperationID = operationID(rt)
		if rt.Role != "" {
			op.Description = "Needs role " + string(rt.Role) + "."
			op.Security = &openapi3.SecurityRequirements{{"bearer": []string{}}}
		} else {
			op.Security = &openapi3.SecurityRequirements{}
		}
		for _, m := range pathParam.FindAllStringSubmatch(rt.Path, -1) {
			op.AddParameter(openapi3.NewPathParameter(m[1]).WithSchema(openapi3.NewStringSchema()))
		}
		for _, q := range rt.Query {
			op.AddParameter(openapi3.NewQueryParameter(q).WithSchema(openapi3.NewStringSchema()))
		}
		if rt.In != nil {
			in, err := schema(rt.In)
			if err != nil {
				return nil, fmt.Errorf("openapi: request of %s %s: %w", rt.Method, rt.Path, err)
			}
			op.RequestBody = &openapi3.RequestBodyRef{Value: openapi3.NewRequestBody().WithJSONSchemaRef(in)}
		}
		out, err := schema(rt.Out)
		if err != nil {
			return nil, fmt.Errorf("openapi: response of %s %s: %w", rt.Method, rt.Path, err)
		}
		ok := http.StatusOK
		if rt.Action != "" {
			ok = http.StatusAccepted
		}
		op.Responses = openapi3.NewResponses()
		op.AddResponse(ok, openapi3.NewResponse().WithDescription(http.StatusText(ok)).WithJSONSchemaRef(out))
		codes := rt.Codes
		if rt.Role != "" {
			codes = append(codes[:len(codes):len(codes)], http.StatusServiceUnavailable)
		}
		for _, code := range codes {
			op.AddResponse(code, openapi3.NewResponse().WithDescription(http.StatusText(code)).WithJSONSchemaRef(errRef))
		}
		item := doc.Paths.Value(rt.Path)
		if item == nil {
			item = &openapi3.PathItem{}
			doc.Paths.Set(rt.Path, item)
		}
		item.SetOperation(rt.Method, op)
	}
	return doc, nil
}

// operationID is e.g. "post_runs_run_approve".
func operationID(rt route) string {
	p := strings.NewReplacer("/v1/", "", "/", "_", "{", "", "}", "", ".", "_").Replace(rt.Path)
	return strings.ToLower(rt.Method) + "_" + p
}

func (s *Server) openapiDoc(c *call) {
	docOnce.Do(func() {
		doc, err := s.OpenAPI()
		if err != nil {
			docErr = err
			return
		}
		docJSON, docErr = json.MarshalIndent(doc, "", "  ")
	})
	if docErr != nil {
		c.fail(http.StatusInternalServerError, docErr.Error(), "a bug: report it")
		return
	}
	c.code = http.StatusOK
	c.w.Header().Set("Content-Type", "application/json")
	_, _ = c.w.Write(docJSON)
}
