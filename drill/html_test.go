package drill

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/chromium"
	"golang.org/x/net/html"
)

func syntheticHTML(t *testing.T) string {
	t.Helper()
	in := synthetic()
	// A client's error quotes the URL it posted to: the page must not
	// carry it as a reference.
	for i := range in.Attempts {
		if !in.Attempts[i].OK {
			in.Attempts[i].Err = `Post "http://127.0.0.1:8080/orders": dial tcp 127.0.0.1:8080: connect: connection refused`
		}
	}
	in.Register = &RegisterResult{Result: NotLinearizable, Operations: 10, Keys: 1, Visualization: "/tmp/drill/register.html"}
	r, err := BuildReport(in, DefaultReportOptions())
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := r.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestWriteHTML(t *testing.T) {
	page := syntheticHTML(t)
	for _, want := range []string{
		`id="fault-marker"`, "fault: region-outage west",
		"epoch", "db-promote-east", "traffic-east", // every step, in the timeline and the table
		`id="verdicts"`, `id="rto"`, `id="rpo"`, "1.51s", "1.01s", "190ms",
		`class="lag"`, "first ack +510ms",
		"c0-8", "c0-9", // the lost writes
		"/tmp/drill/register.html",
		"<svg", "@media print",
	} {
		if !strings.Contains(html.UnescapeString(page), want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	for _, bad := range []string{"http://", "https://", "<script", "<link", "@import", "url("} {
		if strings.Contains(page, bad) {
			t.Errorf("the page contains %q: it must be self-contained", bad)
		}
	}
	// Every step ID appears in the timeline's lanes too.
	for _, id := range []string{"epoch", "db-promote-east", "traffic-east"} {
		if strings.Count(page, ">"+id) < 2 {
			t.Errorf("step %s is not both in the timeline and in the table", id)
		}
	}
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatalf("the page does not parse: %v", err)
	}
	var refs []string
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		for _, a := range n.Attr {
			if a.Key == "src" || a.Key == "href" {
				refs = append(refs, a.Val)
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if len(refs) > 0 {
		t.Errorf("the page references %v", refs)
	}
}

// TestWriteHTMLRendersInChromium renders the page once with headless
// Chromium (scripts/deps.sh installs it); it only checks that it renders.
func TestWriteHTMLRendersInChromium(t *testing.T) {
	bin, err := chromium.Path()
	if err != nil {
		t.Fatalf("%v (make test does)", err)
	}
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	if err := os.WriteFile(page, []byte(syntheticHTML(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	png := filepath.Join(dir, "report.png")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// internal/chromium's flags: the page is a local file, and Chromium
	// must not reach any address beyond loopback.
	args := []string{"--headless", "--no-sandbox", "--disable-gpu"}
	for _, f := range chromium.Flags {
		args = append(args, "--"+f)
	}
	args = append(args, "--user-data-dir="+filepath.Join(dir, "profile"), "--window-size=1200,1600", "--screenshot="+png, "file://"+page)
	cmd := exec.CommandContext(ctx, bin, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("chromium could not render %s: %v\n%s", page, err, out)
	}
	if st, err := os.Stat(png); err != nil || st.Size() == 0 {
		t.Fatalf("chromium wrote no screenshot (%v):\n%s", err, out)
	}
}

func TestWriteHTMLLongDrillStaysLight(t *testing.T) {
	// 500 s at 100 ms is 5001 buckets: the page draws at most maxBars.
	in := Input{Attempts: []Attempt{write(0, "a", 0, 10, true), write(0, "b", 500_000, 500_010, false)}, Final: map[string]int{"a": 1}}
	r, err := BuildReport(in, DefaultReportOptions())
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Buckets) != 5001 {
		t.Fatalf("%d buckets, want 5001", len(r.Buckets))
	}
	p := r.page()
	if len(p.Bars) > maxBars || len(p.Bars) < maxBars/2 {
		t.Fatalf("%d bars drawn, want at most %d", len(p.Bars), maxBars)
	}
	var ok, failed int
	for _, b := range p.Bars {
		ok += int(b.OKH)
		if b.FailH > 0 {
			failed++
		}
	}
	if ok == 0 || failed != 1 {
		t.Fatalf("merged bars lost attempts: %d ok height, %d failed bars", ok, failed)
	}
}
