// Command compare runs the same faults against Lifeboat, Patroni (with
// etcd) and pg_auto_failover, under the same load, and prints their RTO
// and lost acknowledged writes side by side.
//
//	sh scripts/peers.sh            # installs the peers (Debian packages), once
//	make build                     # the lab runs bin/lifeboat
//	go run ./bench/compare [-rounds 3] [-systems lifeboat,patroni,pgaf] [-faults kill,partition]
//
// Lifeboat runs its lab (a network namespace per region); each peer's
// members run in network namespaces of their own ("sites", lab/netns), in
// a temporary directory, PostgreSQL as the postgres OS user; each round
// starts a fresh cluster, stops it by PID and removes its namespaces. The numbers are this machine's: they are printed, never
// committed.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// Faults.
const (
	faultKill      = "kill"      // SIGKILL of the primary's postmaster; the host's agents stay up
	faultPartition = "partition" // the primary cut from everyone
)

// setup is one system in one configuration.
type setup struct {
	system  string // lifeboat, patroni, pgaf
	name    string // as printed
	setting string // what is set, as printed
	// round runs one round of fault f in a fresh dir and measures it; a
	// notRun error prints the row as not run.
	round func(ctx context.Context, dir, f string) (result, error)
}

// result is one round.
type result struct {
	rto   time.Duration // fault → first acknowledged write sent after it
	lost  int           // acknowledged writes missing on the primary after recovery
	acked int
	note  string
	// none: no write was acknowledged after the fault within rto (a
	// partition the system did not fail over); lostUnknown: no writable
	// primary to read the writes back from.
	none        bool
	lostUnknown bool
}

// notRun says why a row could not be measured here.
type notRun struct{ reason string }

func (e notRun) Error() string { return "not run: " + e.reason }

func main() {
	rounds := flag.Int("rounds", 3, "rounds per system × setting × fault (a fresh cluster each)")
	systems := flag.String("systems", "lifeboat,patroni,pgaf", "systems to run: lifeboat, patroni, pgaf (pg_auto_failover)")
	faults := flag.String("faults", faultKill+","+faultPartition, "faults: kill (SIGKILL of the primary's postmaster), partition (the primary cut off)")
	binary := flag.String("binary", "bin/lifeboat", "the lifeboat program the lab runs (make build)")
	sync := flag.Bool("sync", true, "also measure Lifeboat with synchronous replication (degrade-after 1s)")
	keep := flag.Bool("keep", false, "keep the temporary directories (logs) for a post-mortem")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *rounds, split(*systems), split(*faults), *binary, *sync, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func run(ctx context.Context, rounds int, systems, faults []string, binary string, sync, keep bool) error {
	if rounds < 1 {
		return fmt.Errorf("-rounds %d: want at least 1", rounds)
	}
	for _, f := range faults {
		if f != faultKill && f != faultPartition {
			return fmt.Errorf("-faults: unknown fault %q: use kill, partition", f)
		}
	}
	var setups []setup
	for _, s := range systems {
		switch s {
		case "lifeboat":
			setups = append(setups, lifeboatSetups(binary, sync)...)
		case "patroni":
			setups = append(setups, patroniSetups()...)
		case "pgaf", "pg_auto_failover":
			setups = append(setups, pgafSetups()...)
		default:
			return fmt.Errorf("-systems: unknown system %q: use lifeboat, patroni, pgaf", s)
		}
	}
	root, err := os.MkdirTemp("", "lifeboat-compare-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Fprintln(os.Stderr, "compare: keeping", root)
	} else {
		defer os.RemoveAll(root)
	}
	// PostgreSQL runs as postgres: it must reach its dirs under root.
	if err := os.Chmod(root, 0o755); err != nil {
		return err
	}

	type row struct {
		s       setup
		fault   string
		results []result
		err     error
	}
	var rows []row
	for _, f := range faults {
		for i, s := range setups {
			r := row{s: s, fault: f}
			for n := range rounds {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				dir := filepath.Join(root, fmt.Sprintf("%s-%d-%s-%d", s.system, i, f, n))
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "compare: %s (%s), %s, round %d of %d…\n", s.name, s.setting, f, n+1, rounds)
				res, err := s.round(ctx, dir, f)
				if err != nil {
					fmt.Fprintf(os.Stderr, "compare:   %v\n", err)
					r.err = err
					break
				}
				switch {
				case res.none:
					fmt.Fprintf(os.Stderr, "compare:   no write acknowledged within %s of the fault; %d acknowledged before; %s\n", res.rto.Round(time.Second), res.acked, res.note)
				default:
					fmt.Fprintf(os.Stderr, "compare:   RTO %s, %d of %d acknowledged writes lost; %s\n", res.rto.Round(time.Millisecond), res.lost, res.acked, res.note)
				}
				r.results = append(r.results, res)
			}
			rows = append(rows, r)
		}
	}

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "fault\tsystem\tsettings\tRTO median\tRTO max\tlost acked writes (total)\trounds\tnote")
	for _, f := range faults {
		best := time.Duration(-1)
		var ours time.Duration = -1
		oursLost := 0
		for _, r := range rows {
			if r.fault != f || len(r.results) == 0 || allNone(r.results) {
				continue
			}
			m := median(rtos(r.results))
			if r.s.system == "lifeboat" {
				if ours < 0 || m < ours {
					ours = m
				}
				for _, x := range r.results {
					oursLost += x.lost
				}
			} else if best < 0 || m < best {
				best = m
			}
		}
		for _, r := range rows {
			if r.fault != f {
				continue
			}
			if len(r.results) == 0 {
				fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\t0\t%v\n", f, r.s.name, r.s.setting, r.err)
				continue
			}
			lost, acked, unknown, nones := 0, 0, 0, 0
			var notes []string
			for _, x := range r.results {
				acked += x.acked
				if x.lostUnknown {
					unknown++
				} else {
					lost += x.lost
				}
				if x.none {
					nones++
				}
				if x.note != "" && !slices.Contains(notes, x.note) {
					notes = append(notes, x.note)
				}
			}
			if r.err != nil {
				notes = append(notes, "stopped early: "+r.err.Error())
			}
			ds := rtos(r.results)
			med, max := median(ds).Round(time.Millisecond).String(), slices.Max(ds).Round(time.Millisecond).String()
			switch {
			case nones == len(r.results):
				med, max = "none in "+max, "-"
			case nones > 0:
				max = "none in " + max
				notes = append(notes, fmt.Sprintf("%d of %d rounds: no failover (counted as %s in the median)", nones, len(r.results), slices.Max(ds).Round(time.Second)))
			}
			lostCol := fmt.Sprintf("%d of %d", lost, acked)
			if unknown > 0 {
				lostCol = fmt.Sprintf("%d of %d (%d rounds unreadable: no primary)", lost, acked, unknown)
				if unknown == len(r.results) {
					lostCol = fmt.Sprintf("? of %d (no primary to read)", acked)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", f, r.s.name, r.s.setting,
				med, max, lostCol, len(r.results), strings.Join(notes, "; "))
		}
		switch {
		case ours < 0:
			fmt.Fprintf(tw, "%s\tLifeboat / best peer\t\t-\t\t\t\tLifeboat not measured\n", f)
		case best < 0:
			fmt.Fprintf(tw, "%s\tLifeboat / best peer\t\t-\t\t\t\tno peer measured\n", f)
		default:
			ratio := ours.Seconds() / best.Seconds()
			verdict := ""
			if f == faultKill {
				verdict = "target <= 0.50 with 0 lost for Lifeboat: " + okOr(ratio <= 0.5 && oursLost == 0)
			}
			fmt.Fprintf(tw, "%s\tLifeboat / best peer\tmedians\t%.2f\t\t\t\t%s\n", f, ratio, verdict)
		}
	}
	return tw.Flush()
}

func allNone(rs []result) bool {
	for _, r := range rs {
		if !r.none {
			return false
		}
	}
	return true
}

func rtos(rs []result) []time.Duration {
	var out []time.Duration
	for _, r := range rs {
		out = append(out, r.rto)
	}
	return out
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func okOr(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISSED"
}
