// Command podid-bench measures the podid identity server on loopback beside
// a do-nothing net/http handler and moto_server, in one invocation, and
// prints a Markdown table. See docs/BENCHMARKS.md.
//
//	go run ./cmd/podid-bench -all -out docs/bench-results.json
//
// With -replicas N it instead compares, in one invocation, one server over
// the embedded SQLite store with N replicas sharing one PostgreSQL database
// (-store, or a private PostgreSQL on loopback), the load spread
// round-robin over the replicas:
//
//	go run ./cmd/podid-bench -replicas 3 -d 8s
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/podid/podid/internal/loadgen"
)

func main() {
	// The bench re-executes itself to run each server in its own process.
	if len(os.Args) > 1 && os.Args[1] == loadgen.ChildCommand {
		if err := loadgen.ServeChild(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "podid-bench child:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "podid-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	all := flag.Bool("all", false, "run every scenario")
	scen := flag.String("scenarios", "", "comma-separated scenarios: "+strings.Join(loadgen.AllScenarios, ","))
	workers := flag.Int("c", loadgen.DefaultWorkers, "concurrent workers (closed loop)")
	dur := flag.Duration("d", loadgen.DefaultDuration, "timed phase per scenario (max 60s)")
	warm := flag.Duration("warmup", 2*time.Second, "untimed warm-up per scenario (max 60s)")
	out := flag.String("out", "", "write the JSON report here")
	md := flag.String("md", "", "write the Markdown table here")
	profDir := flag.String("profile-dir", "", "write one server CPU profile per scenario here")
	podidBin := flag.String("podid-bin", "", "run this built podid binary as the server (no profiles) instead of a child of this bench")
	moto := flag.String("moto", "moto_server", `moto_server command; "" skips the moto scenarios`)
	maxFresh := flag.Int("max-fresh-tokens", 150_000, "upper bound on pre-signed fresh pod tokens")
	rev := flag.String("rev", buildRevision(), "podid revision being measured, recorded in the report")
	keep := flag.Bool("keep", false, "keep the work directory (data dir, child logs)")
	replicas := flag.Int("replicas", 0, "compare one server over SQLite with this many replicas over PostgreSQL (scenarios: "+strings.Join(loadgen.ReplicaScenarios, ",")+")")
	storeDSN := flag.String("store", "", "with -replicas: an empty PostgreSQL database (postgres://…) the replicas share; default: a private PostgreSQL on 127.0.0.1 for the run")
	pgFast := flag.Bool("pg-fast", false, "with -replicas and no -store: run the private PostgreSQL without fsync and with asynchronous commit (the tests' settings)")
	flag.Parse()

	if *replicas > 0 {
		var names []string
		if *scen != "" {
			names = strings.Split(*scen, ",")
		}
		return runReplicas(loadgen.ReplicaOptions{
			Replicas: *replicas, StoreDSN: *storeDSN, PGFast: *pgFast, Workers: *workers, Duration: *dur, Warmup: *warm,
			Scenarios: names, Revision: *rev,
		}, *keep, *out, *md)
	}

	if !*all && *scen == "" {
		return fmt.Errorf("choose -all or -scenarios (have %s)", strings.Join(loadgen.AllScenarios, ", "))
	}
	var names []string
	if !*all {
		names = strings.Split(*scen, ",")
	}
	work, err := os.MkdirTemp("", "podid-bench-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(work)
	} else {
		fmt.Fprintln(os.Stderr, "work dir:", work)
	}
	if *profDir != "" {
		if err := os.MkdirAll(*profDir, 0o755); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := loadgen.RunAll(ctx, loadgen.Options{
		Workers: *workers, Duration: *dur, Warmup: *warm, Scenarios: names,
		WorkDir: work, ProfileDir: *profDir, PodidBin: *podidBin, MotoCommand: *moto,
		MaxFreshTokens: *maxFresh, Revision: *rev, Log: os.Stderr,
	})
	if err != nil {
		return err
	}
	table := rep.Markdown()
	fmt.Println(table)
	if *md != "" {
		if err := os.WriteFile(*md, []byte(table), 0o644); err != nil {
			return err
		}
	}
	if *out != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if rep.HasErrors() {
		return fmt.Errorf("THE RUN HAD FAILED REQUESTS; see the table")
	}
	return nil
}

// runReplicas runs the replica comparison and writes its report.
func runReplicas(o loadgen.ReplicaOptions, keep bool, out, md string) error {
	o.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	work, err := os.MkdirTemp("", "podid-bench-replicas-")
	if err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	if keep {
		o.Log.Info("keeping the work dir", "dir", work)
	} else {
		defer os.RemoveAll(work)
	}
	o.WorkDir = work
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := loadgen.RunReplicas(ctx, o)
	if err != nil {
		return fmt.Errorf("replica comparison: %w", err)
	}
	table := rep.Markdown()
	fmt.Println(table)
	if md != "" {
		if err := os.WriteFile(md, []byte(table), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", md, err)
		}
	}
	if out != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", out, err)
		}
	}
	if rep.HasErrors() {
		return fmt.Errorf("THE RUN HAD FAILED REQUESTS; see the table")
	}
	return nil
}

// buildRevision is the VCS commit Go stamped into this binary, marked
// "+dirty" when the tree had uncommitted changes.
func buildRevision() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision":
			rev = s.Value
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "+dirty"
		}
	}
	return rev + dirty
}
