// Command coordctl is the operator's tool for the metadata of a Codis
// 2.x-style cluster (slots, server groups, proxies, actions, locks) kept in
// ZooKeeper, etcd or Consul, or, by default, in an etcd server embedded in
// the tool that keeps its data in a local directory.
//
//	coordctl demo                                   # try it all, nothing installed
//	coordctl --store zk://10.0.0.1:2181 slot list   # a Codis 2 cluster on ZooKeeper
//	coordctl copy --from zk://10.0.0.1:2181 --to etcd://10.0.0.2:2379
//
// Exit codes: 0 success, 1 failure (one line on stderr), 2 bad usage
// (checked before connecting), 130 interrupted.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/coordkit/coord/coord/etcdembed"
	"github.com/coordkit/coord/coord/etcdstore"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/models"
	"github.com/coordkit/coord/storeurl"
)

// app holds the global flags and what they open.
type app struct {
	storeURL     string
	product      string
	jsonOut      bool
	yes          bool
	noLock       bool
	timeout      time.Duration
	opt          storeurl.Options
	progressMode string // --progress: auto, always or never
	// progressOpen is set while a progress line is unended on a terminal.
	progressOpen bool
	lastShown    time.Time // when a progress line was last printed off a terminal
	waitShown    bool      // a wait for answers is on show
	// did is the last progress a command made, and resume how to go on
	// after an interrupt: both for the interrupt summary.
	did, resume string

	out, errOut io.Writer
	conn        *storeurl.Conn
	store       coord.Store
}

type usageError struct{ error }

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	a := &app{out: stdout, errOut: stderr}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	a.close()
	a.endProgress()
	if err == nil {
		return 0
	}
	msg, code := oneLine(err), 1
	var ue usageError
	switch {
	case ctx.Err() != nil:
		// Interrupted (Ctrl-C, SIGTERM): say so, what was done, and how to go on.
		msg, code = "interrupted: "+msg+"; "+a.summary(err), 130
	case errors.As(err, &ue) || errors.Is(err, storeurl.ErrBadURL) || strings.HasPrefix(err.Error(), "unknown command") || strings.HasPrefix(err.Error(), "unknown flag") ||
		strings.Contains(err.Error(), "arg(s)") || strings.HasPrefix(err.Error(), "invalid argument") || strings.Contains(err.Error(), "flag needs an argument"):
		code = 2
	}
	if a.jsonOut {
		_ = json.NewEncoder(stdout).Encode(&ErrorOut{Header: Header{V: jsonVersion}, Error: msg, Exit: code, Done: a.did})
	}
	fmt.Fprintf(stderr, "coordctl: %s\n", msg)
	return code
}

// oneLine is err's message on one line. The error types of coord and models
// name their package once however deep the chain (models.Error,
// coord.PathError), so nothing is cut here.
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", " ")
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "coordctl",
		Short: "Manage the metadata of a Codis 2.x-style cluster in ZooKeeper, etcd or Consul",
		Long: `coordctl manages the metadata of a Codis 2.x-style cluster: 1024 slots,
server groups, proxies, fences, actions that proxies confirm, and the lock.

--store picks where it lives:
  zk://[user:pass@]host:port[,host:port]/chroot   ZooKeeper (no chroot: Codis 2's own paths)
  etcd://[user:pass@]host:port[,host:port][?prefix=coord]
  consul://host:port[?prefix=coord&dc=dc1]         (--token, or CONSUL_HTTP_TOKEN)
  embedded[:DIR]                                   an etcd inside coordctl (default),
                                                   data in --data-dir

Every change takes the product lock (R/LOCK), as Codis 2 tools do; a lock
held by another writer fails the command naming the holder (lock show).
Destructive commands say what they will do and need --yes off a terminal.

Environment: COORD_STORE (--store), COORD_PRODUCT (--product),
COORD_DATA_DIR (--data-dir), COORD_PROGRESS (--progress), COORD_TIMEOUT
(--timeout), COORD_TLS_CA, COORD_TLS_CERT, COORD_TLS_KEY (--tls-*),
CONSUL_HTTP_TOKEN (--token), CONSUL_HTTP_TOKEN_FILE (--token-file),
COORD_STORE_PASSWORD and COORD_STORE_PASSWORD_FILE (--store-password-file:
the password of the user a zk:// or etcd:// URL names without one),
REDIS_PASSWORD (--password of group add-server, promote, slot info and
migrate-done). A flag wins over its variable. Secrets are best given by
environment or file: flags and URLs show in ps. --yes, --no-lock and
--tls-insecure have no variable: they are asked for each time.

Exit status: 0 done, 1 failed (one line on stderr; with --json also
{"ok":false,"error":...} on stdout), 2 bad usage (checked before
connecting), 130 interrupted.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			// Checked before connecting: bad input is bad usage.
			if err := models.ValidateProductName(a.product); err != nil {
				return usageError{fmt.Errorf("--product: %w", err)}
			}
			switch a.progressMode {
			case "auto", "always", "never":
			default:
				return usageError{fmt.Errorf("--progress %q: want auto, always or never", a.progressMode)}
			}
			if cmd.Flags().Changed("store-password-file") {
				a.opt.Password = "" // the flag wins over COORD_STORE_PASSWORD
			}
			if v := os.Getenv("COORD_TIMEOUT"); v != "" && !cmd.Flags().Changed("timeout") {
				d, err := time.ParseDuration(v)
				if err != nil {
					return usageError{fmt.Errorf("COORD_TIMEOUT %q: not a duration (say 30s or 2m)", v)}
				}
				a.timeout = d
			}
			if a.timeout <= 0 {
				return usageError{fmt.Errorf("--timeout %v: must be positive", a.timeout)}
			}
			return nil
		},
	}
	f := root.PersistentFlags()
	f.StringVar(&a.storeURL, "store", envOr("COORD_STORE", "embedded"), "store URL (env COORD_STORE)")
	f.StringVar(&a.product, "product", envOr("COORD_PRODUCT", "demo"), "product name (env COORD_PRODUCT)")
	f.BoolVar(&a.jsonOut, "json", false, "print one line of JSON for scripts (shapes: docs/COORDCTL.md)")
	f.StringVar(&a.progressMode, "progress", envOr("COORD_PROGRESS", "auto"), "progress lines on stderr during long work: auto (on a terminal, without --json), always, never (env COORD_PROGRESS)")
	f.BoolVar(&a.noLock, "no-lock", false, "EMERGENCY ONLY: change the product without taking its lock (R/LOCK); concurrent writers can then make proxies miss actions")
	f.BoolVar(&a.yes, "yes", false, "go on with destructive commands without asking (needed when not on a terminal)")
	f.DurationVar(&a.timeout, "timeout", 2*time.Minute, "give up after this long (env COORD_TIMEOUT)")
	f.StringVar(&a.opt.DataDir, "data-dir", storeurl.DefaultDataDir(), "where the embedded store keeps its data (env COORD_DATA_DIR)")
	f.StringVar(&a.opt.Token, "token", "", "Consul ACL token (better: env CONSUL_HTTP_TOKEN, or --token-file; not visible in ps)")
	f.StringVar(&a.opt.TokenFile, "token-file", "", "file whose first line is the Consul ACL token (env CONSUL_HTTP_TOKEN_FILE)")
	f.StringVar(&a.opt.PasswordFile, "store-password-file", os.Getenv("COORD_STORE_PASSWORD_FILE"), "file whose first line is the password of the user the --store URL names (zk://user@..., etcd://user@...; env COORD_STORE_PASSWORD_FILE, or COORD_STORE_PASSWORD)")
	a.opt.Password = os.Getenv("COORD_STORE_PASSWORD")
	f.StringVar(&a.opt.CAFile, "tls-ca", os.Getenv("COORD_TLS_CA"), "CA certificate file (turns TLS on: ZooKeeper secure port, etcd, Consul; env COORD_TLS_CA)")
	f.StringVar(&a.opt.CertFile, "tls-cert", os.Getenv("COORD_TLS_CERT"), "client certificate file (env COORD_TLS_CERT)")
	f.StringVar(&a.opt.KeyFile, "tls-key", os.Getenv("COORD_TLS_KEY"), "client key file (env COORD_TLS_KEY)")
	f.BoolVar(&a.opt.InsecureSkipVerify, "tls-insecure", false, "do not verify the server certificate")
	a.opt.Embedded = startEmbedded
	a.opt.ZKLeaf = models.IsLeafNode // Codis 2's ACLs on ZooKeeper
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(parent(a.slotCmd()), parent(a.groupCmd()), parent(a.proxyCmd()), parent(a.actionCmd()), parent(a.lockCmd()),
		parent(a.productCmd()), parent(a.rawCmd()), a.dumpCmd(), a.loadCmd(), a.copyCmd(), a.demoCmd())
	a.addCompletions(root)
	return root
}

// parent makes a command that only holds subcommands fail on a missing or
// unknown subcommand (cobra would print help and succeed).
func parent(c *cobra.Command) *cobra.Command {
	c.Args = cobra.ArbitraryArgs
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return usageError{fmt.Errorf("%s needs a subcommand; see %s --help", cmd.CommandPath(), cmd.CommandPath())}
		}
		return usageError{fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())}
	}
	return c
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// open connects to --store once per run.
func (a *app) open(ctx context.Context) (coord.Store, error) {
	if a.store != nil {
		return a.store, nil
	}
	conn, err := storeurl.Dial(ctx, a.storeURL, a.opt)
	if err != nil {
		return nil, err
	}
	s, err := conn.Open(ctx)
	if err != nil {
		conn.Close()
		return nil, err
	}
	a.conn, a.store = conn, s
	return s, nil
}

func (a *app) close() {
	if a.store != nil {
		a.store.Close()
	}
	if a.conn != nil {
		a.conn.Close()
	}
}

// ctx bounds a command by --timeout (and, with --no-lock, tells the models
// functions not to take the product lock, after a warning).
func (a *app) ctx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if a.noLock {
		fmt.Fprintf(a.errOut, "coordctl: WARNING: --no-lock: changing product %s without its lock; a writer at the same time can make proxies miss an action\n", a.product)
		ctx = models.WithoutLock(ctx)
	}
	ctx = models.WithProgress(ctx, a.modelProgress)
	ctx = models.WithLockDesc(ctx, lockDesc(cmd, time.Now()))
	return context.WithTimeout(ctx, a.timeout)
}

// lockDesc describes the product lock a command takes, for whoever finds
// it held: the command and its arguments (not its flags, which may hold
// secrets; long arguments cut), and since when.
func lockDesc(cmd *cobra.Command, now time.Time) string {
	words := []string{cmd.CommandPath()}
	for _, arg := range cmd.Flags().Args() {
		if r := []rune(arg); len(r) > 40 {
			arg = string(r[:40]) + "..."
		}
		if strings.IndexFunc(arg, func(r rune) bool { return r <= ' ' || r == '"' || r == 0x7f }) >= 0 {
			arg = strconv.Quote(arg)
		}
		words = append(words, arg)
	}
	return fmt.Sprintf("%s (since %s)", strings.Join(words, " "), now.UTC().Format(time.RFC3339))
}

// print writes v as one line of JSON with --json (v's Header filled in),
// else calls human to write a table.
func (a *app) print(v output, human func(w *tabwriter.Writer)) error {
	a.endProgress()
	if a.jsonOut {
		h := v.header()
		h.V, h.OK = jsonVersion, true
		return json.NewEncoder(a.out).Encode(v)
	}
	w := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	human(w)
	return w.Flush()
}

// done reports a change: msg for people, v for scripts.
func (a *app) done(msg string, v output) error {
	return a.print(v, func(w *tabwriter.Writer) { fmt.Fprintln(w, msg) })
}

func atoi(name, s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, usageError{fmt.Errorf("%s: %q is not a whole number", name, s)}
	}
	return n, nil
}

// with runs fn with the store of --store, bounded by --timeout.
func (a *app) with(cmd *cobra.Command, fn func(ctx context.Context, s coord.Store) error) error {
	ctx, cancel := a.ctx(cmd)
	defer cancel()
	s, err := a.open(ctx)
	if err != nil {
		return err
	}
	return fn(ctx, s)
}

// read runs fn, a command that only reads the product, with the store of
// --store: an embedded directory holding no store is an error (nothing is
// created), and so is a product that does not exist (naming those that do),
// so that a mistyped --data-dir or --product is not an empty table.
func (a *app) read(cmd *cobra.Command, fn func(ctx context.Context, s coord.Store) error) error {
	a.opt.MustExist = true
	return a.with(cmd, func(ctx context.Context, s coord.Store) error {
		if err := a.productExists(ctx, s); err != nil {
			return err
		}
		return fn(ctx, s)
	})
}

// productExists fails unless --product exists in s, naming those that do.
func (a *app) productExists(ctx context.Context, s coord.Store) error {
	_, ok, err := s.Exists(ctx, models.ProductPath(a.product))
	if err != nil || ok {
		return err
	}
	names, err := models.Products(ctx, s)
	if err != nil {
		return err
	}
	there := "no products there"
	if len(names) > 0 {
		there = "products there: " + strings.Join(names, ", ")
	}
	return fmt.Errorf("product %q not found in %s (%s)", a.product, a.conn.URL, there)
}

// confirm asks before a destructive change described by what: --yes goes
// on; on a terminal the operator types yes; otherwise it refuses.
func (a *app) confirm(what string) error {
	if a.yes {
		return nil
	}
	if !isTerminal(os.Stdin) || !isTerminal(os.Stderr) {
		return usageError{fmt.Errorf("%s: not on a terminal, so not asking; add --yes to go on", what)}
	}
	fmt.Fprintf(a.errOut, "%s. Type yes to go on: ", what)
	var answer string
	_, _ = fmt.Fscanln(os.Stdin, &answer)
	if answer != "yes" {
		return fmt.Errorf("%s: not confirmed; nothing done", what)
	}
	return nil
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// startEmbedded runs the etcd server of "embedded:" store URLs.
func startEmbedded(dir string) (etcdstore.Config, func(), error) {
	srv, err := etcdembed.Start(dir, etcdembed.Options{})
	if err != nil {
		return etcdstore.Config{}, nil, err
	}
	return srv.Config("coord"), srv.Close, nil
}
