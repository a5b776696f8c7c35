package metrics_test

import (
	"net/http"

	"github.com/lifeboat-dr/lifeboat/metrics"
)

// A region's controller mounts /metrics next to its other handlers. The
// sources are whatever the process has; a nil one is left out.
func Example() {
	c := metrics.DefaultConfig()
	// c.Controller = ctl                // *controller.Controller ('serve --region')
	// c.Runs = store                    // lifeboat.Store
	// c.DNS, c.FrontDoor = hosted.DNS, hosted.FrontDoor
	reg, err := metrics.NewRegistry(c)
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler(reg))
	// Output:
}
