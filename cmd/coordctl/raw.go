package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/models"
)

// newRawNode is the node at path as the raw commands print it, with its
// data when withData and the data is UTF-8.
func newRawNode(path string, data []byte, st coord.Stat, withData bool) NodeOut {
	n := NodeOut{Path: path, Bytes: len(data), Version: st.Version, Ephemeral: st.Ephemeral, Owner: st.Owner}
	if withData {
		if utf8.Valid(data) {
			n.Data = string(data)
		} else {
			n.Binary = true
		}
	}
	return n
}

// productOf is the product whose subtree holds path, if any.
func productOf(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, "/zk/codis/db_")
	if !ok {
		return "", false
	}
	name, _, _ := strings.Cut(rest, "/")
	return name, models.ValidateProductName(name) == nil
}

// rawWrite runs write; under the product lock (and fenced by it) when path
// is in a product, as every other change is (models.WithProductLock, which
// also honours --no-lock).
func (a *app) rawWrite(ctx context.Context, s coord.Store, what, path string, write func(ctx context.Context, s coord.Store) error) error {
	product, ok := productOf(path)
	if !ok {
		return write(ctx, s)
	}
	return models.WithProductLock(ctx, s, product, "coordctl raw "+what+" "+path, write)
}

func (a *app) rawCmd() *cobra.Command {
	c := &cobra.Command{Use: "raw", Short: "The escape hatch: nodes by path (get, stat, ls, put, rm, watch)",
		Long: `raw reads and writes single nodes of the store by their path (as models lays
them out: /zk/codis/db_<product>/...), for repairs no other command makes.
Writes are compare-and-set: give the version that raw stat shows. A write
inside a product takes the product lock, as every other change does.`}
	get := &cobra.Command{Use: "get PATH", Short: "Print a node's data", Args: cobra.ExactArgs(1), RunE: func(cmd *cobra.Command, args []string) error {
		a.opt.MustExist = true
		return a.with(cmd, func(ctx context.Context, s coord.Store) error {
			data, st, err := s.Get(ctx, args[0])
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.print(&NodeReply{Node: newRawNode(args[0], data, st, true)}, nil)
			}
			_, err = a.out.Write(data)
			if err == nil && len(data) > 0 && data[len(data)-1] != '\n' && isTerminal(os.Stdout) {
				fmt.Fprintln(a.out)
			}
			return err
		})
	}}
	stat := &cobra.Command{Use: "stat PATH", Short: "Print a node's version, kind and owner", Args: cobra.ExactArgs(1), RunE: func(cmd *cobra.Command, args []string) error {
		a.opt.MustExist = true
		return a.with(cmd, func(ctx context.Context, s coord.Store) error {
			data, st, err := s.Get(ctx, args[0])
			if err != nil {
				return err
			}
			n := newRawNode(args[0], data, st, false)
			return a.print(&NodeReply{Node: n}, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "path\t%s\nversion\t%d\nephemeral\t%v\nowner\t%s\nbytes\t%d\n", n.Path, n.Version, n.Ephemeral, n.Owner, len(data))
			})
		})
	}}
	ls := &cobra.Command{Use: "ls PATH", Short: "List a node's children", Args: cobra.ExactArgs(1), RunE: func(cmd *cobra.Command, args []string) error {
		a.opt.MustExist = true
		return a.with(cmd, func(ctx context.Context, s coord.Store) error {
			kids, err := s.Children(ctx, args[0])
			if err != nil {
				return err
			}
			if kids == nil {
				kids = []string{}
			}
			return a.print(&ChildrenOut{Path: args[0], Children: kids}, func(w *tabwriter.Writer) {
				for _, k := range kids {
					fmt.Fprintln(w, k)
				}
			})
		})
	}}
	var version int64
	var create bool
	put := &cobra.Command{Use: "put PATH [DATA|-]", Short: "Write a node: --version N (compare-and-set) or --create", Args: cobra.RangeArgs(1, 2), RunE: func(cmd *cobra.Command, args []string) error {
		if create == cmd.Flags().Changed("version") {
			return usageError{fmt.Errorf("raw put needs one of --version N (the node's version, from raw stat) or --create")}
		}
		var data []byte
		switch {
		case len(args) == 1:
		case args[1] == "-":
			b, err := io.ReadAll(os.Stdin)
			if err != nil {
				return err
			}
			data = b
		default:
			data = []byte(args[1])
		}
		if err := coord.ValidatePath(args[0]); err != nil {
			return usageError{err}
		}
		return a.with(cmd, func(ctx context.Context, s coord.Store) error {
			var st coord.Stat
			err := a.rawWrite(ctx, s, "put", args[0], func(ctx context.Context, s coord.Store) error {
				var err error
				if create {
					_, err = s.Create(ctx, args[0], data, coord.Persistent)
					if err == nil {
						_, st, err = s.Get(ctx, args[0])
					}
					return err
				}
				st, err = s.Set(ctx, args[0], data, version)
				return err
			})
			if err != nil {
				return err
			}
			return a.done(fmt.Sprintf("wrote %d bytes to %s (version %d)", len(data), args[0], st.Version), &NodeReply{Node: newRawNode(args[0], data, st, false)})
		})
	}}
	put.Flags().Int64Var(&version, "version", 0, "the node's current version (compare-and-set)")
	put.Flags().BoolVar(&create, "create", false, "create the node (persistent; its parent must exist)")
	var rmVersion int64
	rm := &cobra.Command{Use: "rm PATH --version N", Short: "Delete a node (no children) at the version raw stat shows", Args: cobra.ExactArgs(1), RunE: func(cmd *cobra.Command, args []string) error {
		if !cmd.Flags().Changed("version") {
			return usageError{fmt.Errorf("raw rm needs --version N (the node's version, from raw stat)")}
		}
		if err := coord.ValidatePath(args[0]); err != nil {
			return usageError{err}
		}
		return a.with(cmd, func(ctx context.Context, s coord.Store) error {
			if err := a.confirm(fmt.Sprintf("raw rm deletes %s", args[0])); err != nil {
				return err
			}
			if err := a.rawWrite(ctx, s, "rm", args[0], func(ctx context.Context, s coord.Store) error { return s.Delete(ctx, args[0], rmVersion) }); err != nil {
				return err
			}
			return a.done(fmt.Sprintf("deleted %s", args[0]), &NodeReply{Node: NodeOut{Path: args[0], Absent: true}})
		})
	}}
	rm.Flags().Int64Var(&rmVersion, "version", 0, "the node's current version")
	var count int
	watch := &cobra.Command{Use: "watch PATH", Short: "Print a node's data each time it changes (until --timeout, Ctrl-C or --count)", Args: cobra.ExactArgs(1), RunE: func(cmd *cobra.Command, args []string) error {
		a.opt.MustExist = true
		return a.with(cmd, func(ctx context.Context, s coord.Store) error {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			events, err := s.WatchData(ctx, args[0])
			if err != nil {
				return err
			}
			seen := 0
			for ev := range events {
				if ev.Err != nil {
					return ev.Err
				}
				n := newRawNode(args[0], ev.Data, ev.Stat, true)
				n.Absent = !ev.Exists
				if err := a.print(&NodeReply{Node: n}, func(w *tabwriter.Writer) {
					if n.Absent {
						fmt.Fprintln(w, "(no node)")
						return
					}
					fmt.Fprintf(w, "version %d\t%s\n", n.Version, n.Data)
				}); err != nil {
					return err
				}
				if seen++; count > 0 && seen >= count {
					return nil
				}
			}
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil // --timeout is how a watch is meant to end
			}
			return ctx.Err()
		})
	}}
	watch.Flags().IntVar(&count, "count", 0, "stop after this many states (0: no limit)")
	c.AddCommand(get, stat, ls, put, rm, watch)
	return c
}
