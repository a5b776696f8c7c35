//go:build ignore

// gen writes the JSON Schema of lifeboat.yaml. Run it with
// `go generate ./config`.
package main

import (
	"flag"
	"log"
	"os"

	"github.com/lifeboat-dr/lifeboat/config"
)

func main() {
	out := flag.String("o", "lifeboat.schema.json", "file to write")
	flag.Parse()
	data, err := config.JSONSchema()
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, data, 0o644); err != nil {
		log.Fatal(err)
	}
}
