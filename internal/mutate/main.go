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
//	go run ./internal/mutate [-list FILE] [-run REGEXP] [-timeout 10m] [-v]
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
	flag.Parse()
	text, err := os.ReadFile(*list)
	if err != nil {
		fail(err)
	}
	mutants, err := parse(string(text))
	if err != nil {
		fail(err)
	}
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
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		cmd := exec.CommandContext(ctx, "go", "test", "-count=1", "-failfast", m.Pkg)
		cmd.Dir = scratch
		out, err := cmd.CombinedOutput()
		timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)
		cancel()
		if werr := os.WriteFile(path, orig, 0o644); werr != nil {
			fail(werr)
		}
		killed := err != nil
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) && ctx.Err() == nil {
			fail(fmt.Errorf("mutant %s: running the tests: %v", m.Name, err))
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
			by = " by " + killer(string(out), timedOut)
		}
		fmt.Printf("[%d/%d] %-8s %s%s (%s)\n", i+1, len(mutants), verdict, m.Name, by, time.Since(t0).Round(time.Second))
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
