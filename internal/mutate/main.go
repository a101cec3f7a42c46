// Command mutate measures how well the tests catch realistic bugs: it
// applies each mutant of a list (internal/mutate/mutants.txt) to a scratch
// copy of the module, one at a time, runs the tests of the mutant's package
// and reports the mutants the tests killed and those that survived. A
// surviving mutant is a missing test case. scripts/mutate.sh starts the
// servers and runs it.
//
// The list holds blocks like this one:
//
//	mutant etcd-version-off-by-one coord/etcdstore/store.go ./coord/etcdstore
//	< 	return coord.Stat{Version: kvVersion - 1,
//	> 	return coord.Stat{Version: kvVersion,
//
// The "<" lines must occur exactly once in the file; the ">" lines replace
// them. Lines starting with "#" are comments.
//
// A whole package's tests take minutes against real servers, so a full run
// of every mutant would take many hours. With -killers FILE the command
// remembers, for each mutant, the test that killed it last time, and runs
// that test first (or, for a mutant never killed yet, the tests that killed
// other mutants of the same file). Only a mutant that survives those is run
// against its whole package. The file is a hint for ordering only: every
// verdict comes from a test run of the mutant in this run, and a mutant
// counts as a survivor only after its whole package passed. The file
// defaults to mutate-killers.tsv in $COORD_CACHE (the scripts' cache).
//
//	go run ./internal/mutate [-list FILE] [-run REGEXP] [-killers FILE] [-timeout 10m] [-v]
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Mutant is one realistic bug.
type Mutant struct {
	Name, File, Pkg string
	From, To        string
}

// parse reads a mutant list.
func parse(text string) ([]Mutant, error) {
	var out []Mutant
	var cur *Mutant
	var from, to []string
	flush := func() {
		if cur != nil {
			cur.From, cur.To = strings.Join(from, "\n"), strings.Join(to, "\n")
			out = append(out, *cur)
		}
		cur, from, to = nil, nil, nil
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "mutant "):
			flush()
			f := strings.Fields(line)
			if len(f) != 4 {
				return nil, fmt.Errorf("line %d: want: mutant NAME FILE PACKAGE", n)
			}
			cur = &Mutant{Name: f[1], File: f[2], Pkg: f[3]}
		case strings.HasPrefix(line, "< "), line == "<":
			if cur == nil {
				return nil, fmt.Errorf("line %d: < outside a mutant", n)
			}
			from = append(from, strings.TrimPrefix(strings.TrimPrefix(line, "<"), " "))
		case strings.HasPrefix(line, "> "), line == ">":
			if cur == nil {
				return nil, fmt.Errorf("line %d: > outside a mutant", n)
			}
			to = append(to, strings.TrimPrefix(strings.TrimPrefix(line, ">"), " "))
		case strings.TrimSpace(line) == "", strings.HasPrefix(line, "#"):
		default:
			return nil, fmt.Errorf("line %d: unexpected %q", n, line)
		}
	}
	flush()
	seen := map[string]bool{}
	for _, m := range out {
		if m.From == "" || m.From == m.To {
			return nil, fmt.Errorf("mutant %s: no change", m.Name)
		}
		if seen[m.Name] {
			return nil, fmt.Errorf("mutant %s: defined twice", m.Name)
		}
		seen[m.Name] = true
	}
	return out, sc.Err()
}

// apply returns src with the mutant applied, or an error when its "<" lines
// do not occur exactly once (the list went stale).
func apply(src string, m Mutant) (string, error) {
	if n := strings.Count(src, m.From); n != 1 {
		return "", fmt.Errorf("mutant %s: its lines occur %d times in %s", m.Name, n, m.File)
	}
	return strings.Replace(src, m.From, m.To, 1), nil
}

// copyTree copies the module at src to dst, without .git.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "bin") {
			return filepath.SkipDir
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		// Keep the mode: the tests run the project's scripts (a copy that
		// lost their exec bits failed every restart case, and every mutant
		// that got that far counted as killed).
		return os.WriteFile(target, data, info.Mode().Perm())
	})
}

func main() {
	list := flag.String("list", "internal/mutate/mutants.txt", "the mutant list")
	run := flag.String("run", "", "only the mutants whose name matches this regexp")
	timeout := flag.Duration("timeout", 10*time.Minute, "a test run longer than this counts as killed")
	verbose := flag.Bool("v", false, "print the test output of survivors")
	check := flag.Bool("check", false, "only check that every mutant applies and compiles")
	baseline := flag.Bool("baseline", true, "first run each package's tests unmutated in the scratch copy, and stop if they fail (a kill then means nothing)")
	killersFile := flag.String("killers", defaultKillers(), "a file of the test that last killed each mutant: run first, and updated (\"\": none, every mutant runs its whole package)")
	flag.Parse()
	text, err := os.ReadFile(*list)
	if err != nil {
		fail(err)
	}
	mutants, err := parse(string(text))
	if err != nil {
		fail(err)
	}
	all := mutants
	if *run != "" {
		re, err := regexp.Compile(*run)
		if err != nil {
			fail(err)
		}
		var keep []Mutant
		for _, m := range mutants {
			if re.MatchString(m.Name) {
				keep = append(keep, m)
			}
		}
		mutants = keep
	}
	scratch, err := os.MkdirTemp("", "coord-mutate-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(scratch)
	if err := copyTree(".", scratch); err != nil {
		fail(err)
	}
	if *baseline && !*check {
		seen := map[string]bool{}
		for _, m := range mutants {
			if seen[m.Pkg] {
				continue
			}
			seen[m.Pkg] = true
			t0 := time.Now()
			cmd := exec.Command("go", "test", "-count=1", "-failfast", m.Pkg)
			cmd.Dir = scratch
			if out, err := cmd.CombinedOutput(); err != nil {
				fail(fmt.Errorf("the tests of %s fail without any mutant, in the scratch copy (by %s); fix that first:\n%s", m.Pkg, killer(string(out), false), out))
			}
			fmt.Printf("baseline %s passes (%s)\n", m.Pkg, time.Since(t0).Round(time.Second))
		}
	}
	killers := map[string]string{}
	if *killersFile != "" {
		data, err := os.ReadFile(*killersFile)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			fail(err)
		}
		killers = parseKillers(string(data))
	}
	type score struct{ killed, total int }
	scores := map[string]*score{}
	var survivors []string
	start := time.Now()
	for i, m := range mutants {
		group := strings.SplitN(m.Name, "-", 2)[0]
		if scores[group] == nil {
			scores[group] = &score{}
		}
		path := filepath.Join(scratch, m.File)
		orig, err := os.ReadFile(path)
		if err != nil {
			fail(err)
		}
		mutated, err := apply(string(orig), m)
		if err != nil {
			fail(err)
		}
		if err := os.WriteFile(path, []byte(mutated), 0o644); err != nil {
			fail(err)
		}
		t0 := time.Now()
		if *check {
			cmd := exec.Command("go", "test", "-count=1", "-run", "^$", m.Pkg)
			cmd.Dir = scratch
			out, err := cmd.CombinedOutput()
			if werr := os.WriteFile(path, orig, 0o644); werr != nil {
				fail(werr)
			}
			if err != nil {
				fail(fmt.Errorf("mutant %s does not compile:\n%s", m.Name, out))
			}
			fmt.Printf("[%d/%d] ok %s\n", i+1, len(mutants), m.Name)
			continue
		}
		var out []byte
		killed, timedOut, how := false, false, ""
		if h := hints(m, all, killers); len(h) > 0 {
			out, killed, timedOut = goTest(scratch, m, *timeout, runPattern(h))
			how = ", first try"
		}
		if !killed {
			out, killed, timedOut = goTest(scratch, m, *timeout, "")
			how = ""
		}
		if werr := os.WriteFile(path, orig, 0o644); werr != nil {
			fail(werr)
		}
		scores[group].total++
		verdict := "killed"
		if killed {
			scores[group].killed++
		} else {
			verdict = "SURVIVED"
			survivors = append(survivors, m.Name)
		}
		by := ""
		if killed {
			k := killer(string(out), timedOut)
			by = " by " + k
			if *killersFile != "" && strings.HasPrefix(k, "Test") && killers[m.Name] != k {
				killers[m.Name] = k
				if err := writeKillers(*killersFile, killers); err != nil {
					fail(err)
				}
			}
		}
		fmt.Printf("[%d/%d] %-8s %s%s (%s%s)\n", i+1, len(mutants), verdict, m.Name, by, time.Since(t0).Round(time.Second), how)
		if !killed && *verbose {
			fmt.Println(string(out))
		}
	}
	if *check {
		fmt.Printf("%d mutants apply and compile\n", len(mutants))
		return
	}
	fmt.Printf("\n%d mutants in %v\n", len(mutants), time.Since(start).Round(time.Second))
	for group, s := range scores {
		fmt.Printf("%-10s %d/%d killed (%.0f%%)\n", group, s.killed, s.total, 100*float64(s.killed)/float64(s.total))
	}
	for _, name := range survivors {
		fmt.Println("survivor:", name)
	}
}

// defaultKillers is the killers file in the project's cache, the directory
// the scripts keep the servers in: $COORD_CACHE, or coord in the user's
// cache directory. Never in the repository: it describes a machine's runs.
func defaultKillers() string {
	dir := os.Getenv("COORD_CACHE")
	if dir == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			return ""
		}
		dir = filepath.Join(c, "coord")
	}
	return filepath.Join(dir, "mutate-killers.tsv")
}

// goTest runs the tests of m's package in the scratch copy, only those that
// pattern selects when it is not empty (all of them when it is). It reports whether the mutant was
// killed, that is whether the tests failed or did not finish in time.
func goTest(dir string, m Mutant, timeout time.Duration, pattern string) (out []byte, killed, timedOut bool) {
	args := []string{"test", "-count=1", "-failfast"}
	if pattern != "" {
		args = append(args, "-run", pattern)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append(args, m.Pkg)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) && ctx.Err() == nil {
		fail(fmt.Errorf("mutant %s: running the tests: %v", m.Name, err))
	}
	return out, err != nil, errors.Is(ctx.Err(), context.DeadlineExceeded)
}

// hints lists the tests to try first on m: the test that last killed it, or,
// for a mutant not killed yet, the tests that killed the other mutants of its
// file (a bug in one function is often caught where its neighbours' were).
func hints(m Mutant, all []Mutant, killers map[string]string) []string {
	if k, ok := killers[m.Name]; ok {
		return []string{k}
	}
	seen := map[string]bool{}
	var out []string
	for _, o := range all {
		if k, ok := killers[o.Name]; ok && o.File == m.File && !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// runPattern builds a go test -run pattern that selects every test named
// (names as "--- FAIL" prints them: TestX/sub/case). The pattern matches
// level by level, so it may select a few more tests than named (the names'
// levels combined), never fewer.
func runPattern(names []string) string {
	var levels [][]string
	for _, n := range names {
		for i, part := range strings.Split(n, "/") {
			if i == len(levels) {
				levels = append(levels, nil)
			}
			levels[i] = append(levels[i], regexp.QuoteMeta(part))
		}
	}
	parts := make([]string, len(levels))
	for i, alts := range levels {
		sort.Strings(alts)
		uniq := alts[:0]
		for j, a := range alts {
			if j == 0 || a != alts[j-1] {
				uniq = append(uniq, a)
			}
		}
		parts[i] = "^(" + strings.Join(uniq, "|") + ")$"
	}
	return strings.Join(parts, "/")
}

// parseKillers reads a killers file: lines "mutant<TAB>test". Lines that do
// not have that shape are skipped (it is a hint, rewritten on every kill).
func parseKillers(text string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if name, test, ok := strings.Cut(line, "\t"); ok && name != "" && strings.HasPrefix(test, "Test") {
			out[name] = test
		}
	}
	return out
}

// writeKillers replaces the killers file, atomically, so that a run cut
// short leaves the old file or the new one.
func writeKillers(path string, killers map[string]string) error {
	names := make([]string, 0, len(killers))
	for n := range killers {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s\t%s\n", n, killers[n])
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

var failLine = regexp.MustCompile(`(?m)^\s*--- FAIL: (\S+)`)

// killer names what killed a mutant: the deepest failing test of the
// output (the last "--- FAIL" line names a parent), a build failure or
// the timeout. A kill by a test that fails without the mutant too (a flaky
// test) is no kill: the name lets a reader check.
func killer(out string, timedOut bool) string {
	if timedOut {
		return "the timeout"
	}
	m := failLine.FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		if strings.Contains(out, "[build failed]") || strings.Contains(out, "[setup failed]") {
			return "the build"
		}
		return "a failure outside a test"
	}
	deepest := m[0][1]
	for _, x := range m {
		if strings.Count(x[1], "/") > strings.Count(deepest, "/") {
			deepest = x[1]
		}
	}
	return deepest
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "mutate:", err)
	os.Exit(2)
}
