package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/models"
)

// showProgress reports whether progress lines go to stderr, and whether
// stderr is a terminal (lines are then redrawn in place).
func (a *app) showProgress() (show, term bool) {
	f, ok := a.errOut.(*os.File)
	term = ok && isTerminal(f)
	switch a.progressMode {
	case "always":
		return true, term
	case "never":
		return false, false
	}
	return term && !a.jsonOut, term
}

// show puts line on the progress line: redrawn in place on a terminal and
// ended when final; elsewhere (--progress always) one line at a time, at
// most one a second besides the final ones.
func (a *app) show(line string, final bool) {
	show, term := a.showProgress()
	if !show {
		return
	}
	if term {
		fmt.Fprintf(a.errOut, "\r%s\x1b[K", line)
		a.progressOpen = !final
		if final {
			fmt.Fprintln(a.errOut)
		}
		return
	}
	if !final && time.Since(a.lastShown) < time.Second {
		return
	}
	a.lastShown = time.Now()
	fmt.Fprintf(a.errOut, "coordctl: %s\n", line)
}

// endProgress ends an unended progress line, before any other output.
func (a *app) endProgress() {
	if a.progressOpen {
		fmt.Fprintln(a.errOut)
		a.progressOpen = false
	}
}

// progress reports that done of total steps of what are done.
func (a *app) progress(what string, done, total int) {
	a.did = fmt.Sprintf("%s %d/%d", what, done, total)
	a.show(a.did, done == total)
}

// modelProgress shows what the models functions report (models.WithProgress):
// the deletions of action gc, a wait for the product lock (naming its
// holder), and a wait for the proxies' answers that takes longer than
// models.ProgressInterval, naming the silent ones.
func (a *app) modelProgress(p models.Progress) {
	switch p.Op {
	case "Lock":
		a.show(fmt.Sprintf("waiting %v for the product lock, %s", p.Elapsed.Round(time.Second), strings.Join(p.Waiting, "")), false)
	case "ActionGC":
		a.progress("deleting actions", p.Done, p.Total)
	case "WaitForReceiverWithTimeout":
		switch {
		case p.Done == p.Total:
			if a.waitShown {
				a.waitShown = false
				a.show(fmt.Sprintf("all %d proxies answered after %v", p.Total, p.Elapsed.Round(100*time.Millisecond)), true)
			}
		case p.Elapsed >= models.ProgressInterval:
			a.waitShown = true
			a.show(fmt.Sprintf("waiting for the proxies to confirm: %d/%d answered after %v; silent: %s", p.Done, p.Total, p.Elapsed.Round(time.Second), strings.Join(p.Waiting, ", ")), false)
		}
	}
}

// summary says, after an interrupt that ended the command with err, what
// the command had done and how to go on.
func (a *app) summary(err error) string {
	msg := "done before: " + a.did
	switch {
	case a.did == "" && errors.Is(err, coord.ErrLocked):
		// Every change is made under the lock: none was made yet.
		return "nothing was changed: it was still waiting for the product lock"
	case a.did == "":
		msg = "it may have made its change or not"
	}
	if a.resume != "" {
		return msg + "; to go on: " + a.resume
	}
	return msg + "; what was done stays done: check with 'coordctl slot list', 'proxy list' and 'action list'"
}
