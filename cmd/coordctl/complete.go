package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/models"
)

// completeTimeout bounds what a completion reads from the store: a shell
// waiting on a Tab is worse than no suggestion.
const completeTimeout = 3 * time.Second

// fromStore completes from what list reads in the store of --store (an
// embedded directory must hold a store already; nothing is created). Any
// error, including a store that does not answer within completeTimeout,
// offers nothing.
func (a *app) fromStore(list func(ctx context.Context, s coord.Store, args []string) ([]cobra.Completion, error)) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		ctx, cancel := context.WithTimeout(cmd.Context(), completeTimeout)
		defer cancel()
		a.opt.MustExist = true
		s, err := a.open(ctx)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		all, err := list(ctx, s, args)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, c := range all {
			if strings.HasPrefix(c, toComplete) {
				out = append(out, c)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// nth completes argument n with fn, and nothing else.
func nth(n int, fn cobra.CompletionFunc) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) != n {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return fn(cmd, args, toComplete)
	}
}

// groupIDs lists the product's groups, each with its master.
func (a *app) groupIDs(ctx context.Context, s coord.Store, _ []string) ([]cobra.Completion, error) {
	groups, err := models.ServerGroups(ctx, s, a.product)
	if err != nil {
		return nil, err
	}
	var out []cobra.Completion
	for _, g := range groups {
		desc := "no master"
		for _, sv := range g.Servers {
			if sv.Type == models.SERVER_TYPE_MASTER {
				desc = "master " + sv.Addr
			}
		}
		out = append(out, cobra.CompletionWithDesc(strconv.Itoa(g.Id), fmt.Sprintf("%s, %d servers", desc, len(g.Servers))))
	}
	return out, nil
}

// serverAddrs lists the servers of the group named by the first argument.
func (a *app) serverAddrs(ctx context.Context, s coord.Store, args []string) ([]cobra.Completion, error) {
	id, err := strconv.Atoi(args[0])
	if err != nil {
		return nil, err
	}
	g, err := models.GetGroup(ctx, s, a.product, id)
	if err != nil {
		return nil, err
	}
	var out []cobra.Completion
	for _, sv := range g.Servers {
		out = append(out, cobra.CompletionWithDesc(sv.Addr, sv.Type))
	}
	return out, nil
}

// proxyIDs lists the product's proxies with their state.
func (a *app) proxyIDs(ctx context.Context, s coord.Store, _ []string) ([]cobra.Completion, error) {
	list, err := models.ProxyList(ctx, s, a.product, nil)
	if err != nil {
		return nil, err
	}
	var out []cobra.Completion
	for _, p := range list {
		out = append(out, cobra.CompletionWithDesc(p.Id, p.State+" "+p.Addr))
	}
	return out, nil
}

// actionSeqs lists the sequence numbers of the product's actions.
func (a *app) actionSeqs(ctx context.Context, s coord.Store, _ []string) ([]cobra.Completion, error) {
	seqs, err := models.GetActionSeqList(ctx, s, a.product)
	if err != nil {
		return nil, err
	}
	var out []cobra.Completion
	for _, seq := range seqs {
		out = append(out, strconv.Itoa(seq))
	}
	return out, nil
}

// products lists the products in the store.
func (a *app) products(ctx context.Context, s coord.Store, _ []string) ([]cobra.Completion, error) {
	return models.Products(ctx, s)
}

// addCompletions gives the commands' arguments and flags completions from
// the store (groups, servers, proxies, actions, products) and from the
// fixed sets of values some flags take.
func (a *app) addCompletions(root *cobra.Command) {
	groups, proxies := nth(0, a.fromStore(a.groupIDs)), nth(0, a.fromStore(a.proxyIDs))
	args := map[string]cobra.CompletionFunc{
		"group remove":     groups,
		"group add-server": groups,
		"group remove-server": func(c *cobra.Command, args []string, tc string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if len(args) == 1 {
				return a.fromStore(a.serverAddrs)(c, args, tc)
			}
			return groups(c, args, tc)
		},
		"slot range-set": nth(2, a.fromStore(a.groupIDs)),
		"proxy online":   proxies,
		"proxy offline":  proxies,
		"action show":    nth(0, a.fromStore(a.actionSeqs)),
	}
	args["group promote"] = args["group remove-server"]
	fixed := func(values ...string) cobra.CompletionFunc {
		return func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			var out []cobra.Completion
			for _, v := range values {
				if strings.HasPrefix(v, toComplete) {
					out = append(out, v)
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		}
	}
	flags := map[string]map[string]cobra.CompletionFunc{
		"slot range-set":   {"status": fixed(string(models.SLOT_STATUS_ONLINE), string(models.SLOT_STATUS_OFFLINE))},
		"slot set":         {"status": fixed(string(models.SLOT_STATUS_ONLINE), string(models.SLOT_STATUS_OFFLINE)), "group": a.fromStore(a.groupIDs)},
		"slot migrate":     {"to": a.fromStore(a.groupIDs)},
		"group add-server": {"type": fixed(models.SERVER_TYPE_MASTER, models.SERVER_TYPE_SLAVE)},
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		name := strings.TrimPrefix(c.CommandPath(), root.Name()+" ")
		if fn, ok := args[name]; ok {
			c.ValidArgsFunction = fn
		} else if !c.HasSubCommands() {
			c.ValidArgsFunction = cobra.NoFileCompletions
		}
		for flag, fn := range flags[name] {
			if err := c.RegisterFlagCompletionFunc(flag, fn); err != nil {
				panic(err) // a flag renamed without its completion: caught by the tests
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	for flag, fn := range map[string]cobra.CompletionFunc{
		"product":  a.fromStore(a.products),
		"progress": fixed("auto", "always", "never"),
	} {
		if err := root.RegisterFlagCompletionFunc(flag, fn); err != nil {
			panic(err)
		}
	}
}
