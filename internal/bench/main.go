// Command bench is the side-by-side harness behind `make bench`: on every
// backend present (an embedded etcd, a standalone etcd server in a process
// of its own, ZooKeeper at COORD_TEST_ZK, Consul at COORD_TEST_CONSUL) it
// measures the store and the models against a baseline run in the same
// rounds (the backend's own client doing the same work in the fewest
// requests, a Codis 2 style 500 ms poll, the server's write-to-watch-event
// floor) and prints one table: medians over interleaved rounds, with the
// per-round ratio's median and interquartile range.
//
// Usage:
//
//	go run ./internal/bench [-rounds 7] [-only REGEX] [-big]
//
// Every server it talks to is on loopback.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"runtime"
	"runtime/pprof"
	"strings"
	"text/tabwriter"
	"time"
)

var (
	rounds = flag.Int("rounds", 7, "interleaved rounds per measure")
	only   = flag.String("only", "", "run only the measures whose backend/name matches this regular expression")
	big    = flag.Bool("big", false, "also list 100,000 children (slow: minutes per backend)")
	serve  = flag.String("serve-etcd", "", "internal: run a standalone etcd server on this data directory")
	cpuOut = flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	trace  = flag.Bool("trace", false, "print the store calls of one SetSlotRange(1024) and one confirmed action, with when each was sent and answered")
)

// row is one line of the table.
type row struct {
	backend, measure string
	coord, base      string
	ratio            string
	note             string
}

type table struct {
	rows []row
	re   *regexp.Regexp
}

func (t *table) want(backend, measure string) bool {
	return t.re == nil || t.re.MatchString(backend+"/"+measure)
}

func (t *table) add(r row) {
	t.rows = append(t.rows, r)
	fmt.Fprintf(os.Stderr, "bench: %s %s: %s vs %s %s %s\n", r.backend, r.measure, r.coord, r.base, r.ratio, r.note)
}

func (t *table) print() {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "backend\tmeasure\tcoord\tbaseline\tratio (IQR)\tnote")
	for _, r := range t.rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", r.backend, r.measure, r.coord, r.base, r.ratio, r.note)
	}
	w.Flush()
}

func main() {
	flag.Parse()
	if *serve != "" {
		serveEtcd(*serve)
		return
	}
	if *cpuOut != "" {
		f, err := os.Create(*cpuOut)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: -cpuprofile: %v\n", err)
			os.Exit(2)
		}
		defer pprof.StopCPUProfile()
	}
	t := &table{}
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: -only: %v\n", err)
			os.Exit(2)
		}
		t.re = re
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start := time.Now()
	bes, cleanup, err := backendsPresent(ctx)
	defer cleanup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
	for _, be := range bes {
		if err := runBackend(ctx, t, be); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s: %v\n", be.name, err)
			t.add(row{backend: be.name, measure: "(stopped)", note: oneLine(err)})
		}
		if ctx.Err() != nil {
			break
		}
	}
	fmt.Printf("# coord bench, %s, %s/%s, %d CPUs, GOMAXPROCS %d, %d rounds\n", time.Now().UTC().Format("2006-01-02 15:04 MST"),
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), *rounds)
	if load, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Printf("# load average at the end: %s\n", strings.Join(strings.Fields(string(load))[:3], " "))
	}
	for _, be := range bes {
		fmt.Printf("# %s: %s\n", be.name, be.version)
	}
	t.print()
	fmt.Printf("# wall time %s\n", time.Since(start).Round(time.Second))
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", " ") }

// selfCommand runs this program again with args (the standalone etcd).
func selfCommand(args ...string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return exec.Command(exe, args...), nil
}
