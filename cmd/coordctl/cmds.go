package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/redisc"
	"github.com/coordkit/coord/models"
)

func (a *app) slotCmd() *cobra.Command {
	c := &cobra.Command{Use: "slot", Short: "Slots: init, range-set, set, list, info, migrate, migrate-done"}
	var force bool
	initCmd := &cobra.Command{
		Use: "init", Short: "Create the 1024 slots, offline and unassigned", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.with(cmd, func(ctx context.Context, s coord.Store) error {
				if err := models.ValidateProductName(a.product); err != nil {
					return err
				}
				// Counting the slot nodes is enough; reading them is not needed.
				existing, err := s.Children(ctx, models.GetSlotBasePath(a.product))
				if err != nil && !errors.Is(err, coord.ErrNoNode) {
					return err
				}
				if len(existing) > 0 && !force {
					return fmt.Errorf("product %s has %d slots already; --force overwrites them all as offline", a.product, len(existing))
				}
				if len(existing) > 0 {
					online := 0
					if slots, err := models.Slots(ctx, s, a.product); err == nil {
						for _, sl := range slots {
							if sl.State.Status != models.SLOT_STATUS_OFFLINE {
								online++
							}
						}
					}
					if err := a.confirm(fmt.Sprintf("slot init --force sets all %d slots of %s offline and unassigned (%d are not offline now: their keys become unreachable through the proxies)", len(existing), a.product, online)); err != nil {
						return err
					}
				}
				if err := models.InitSlotSet(ctx, s, a.product, models.DEFAULT_SLOT_NUM); err != nil {
					return err
				}
				return a.done(fmt.Sprintf("initialized %d slots of %s", models.DEFAULT_SLOT_NUM, a.product), &CountOut{Product: a.product, Count: models.DEFAULT_SLOT_NUM})
			})
		},
	}
	initCmd.Flags().BoolVar(&force, "force", false, "overwrite existing slots")
	var status string
	rangeCmd := &cobra.Command{
		Use: "range-set FROM TO GROUP", Short: "Assign offline slots FROM..TO to GROUP (confirmed by the proxies)", Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			from, err := atoi("FROM", args[0])
			if err != nil {
				return err
			}
			to, err := atoi("TO", args[1])
			if err != nil {
				return err
			}
			group, err := atoi("GROUP", args[2])
			if err != nil {
				return err
			}
			return a.with(cmd, func(ctx context.Context, s coord.Store) error {
				start := time.Now()
				if err := models.SetSlotRange(ctx, s, a.product, from, to, group, models.SlotStatus(status)); err != nil {
					return err
				}
				took := time.Since(start)
				return a.done(fmt.Sprintf("slots %d..%d -> group %d (%s) in %v", from, to, group, status, took.Round(time.Millisecond)),
					&RangeOut{Product: a.product, From: from, To: to, Group: group, Status: status, Micros: micros(took)})
			})
		},
	}
	rangeCmd.Flags().StringVar(&status, "status", "online", "online or offline")
	var setGroup int
	var setStatus string
	var setForce bool
	setCmd := &cobra.Command{
		Use: "set ID", Short: "Set one slot's group and status (confirmed)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := atoi("ID", args[0])
			if err != nil {
				return err
			}
			st := models.SlotStatus(setStatus)
			if st == models.SLOT_STATUS_MIGRATE || st == models.SLOT_STATUS_PRE_MIGRATE {
				return usageError{fmt.Errorf("slot set --status %s: a migration needs its source and target; use slot migrate ID --to GROUP", st)}
			}
			return a.with(cmd, func(ctx context.Context, s coord.Store) error {
				sl, err := models.GetSlot(ctx, s, a.product, id)
				if err != nil {
					return err
				}
				if cmd.Flags().Changed("group") && setGroup != sl.GroupId && sl.State.Status != models.SLOT_STATUS_OFFLINE && !setForce {
					return fmt.Errorf("slot %d is %s in group %d: moving it to group %d without migrating leaves its keys behind; use slot migrate, or set it offline first, or --force", sl.Id, sl.State.Status, sl.GroupId, setGroup)
				}
				if cmd.Flags().Changed("group") {
					sl.GroupId = setGroup
				}
				if setStatus != "" {
					sl.State.Status = models.SlotStatus(setStatus)
					if sl.State.Status != models.SLOT_STATUS_MIGRATE && sl.State.Status != models.SLOT_STATUS_PRE_MIGRATE {
						sl.State.MigrateStatus = models.SlotMigrateStatus{From: models.INVALID_ID, To: models.INVALID_ID}
					}
				}
				if err := sl.Update(ctx, s); err != nil {
					return err
				}
				return a.done(fmt.Sprintf("slot %d: group %d, %s", sl.Id, sl.GroupId, sl.State.Status), &SlotsOut{Product: a.product, Slots: []SlotOut{slotOut(sl)}})
			})
		},
	}
	setCmd.Flags().IntVar(&setGroup, "group", models.INVALID_ID, "group id")
	setCmd.Flags().BoolVar(&setForce, "force", false, "regroup a slot that is not offline (its keys stay in the old group)")
	setCmd.Flags().StringVar(&setStatus, "status", "", "online, offline, migrate or pre_migrate")
	var migrating bool
	listCmd := &cobra.Command{
		Use: "list", Short: "List slots (ranges of slots in the same state are folded)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.read(cmd, func(ctx context.Context, s coord.Store) error {
				slots, err := models.Slots(ctx, s, a.product)
				if migrating {
					slots, err = models.GetMigratingSlots(ctx, s, a.product)
				}
				if err != nil {
					return err
				}
				out := &SlotsOut{Product: a.product, Slots: []SlotOut{}}
				for _, sl := range slots {
					out.Slots = append(out.Slots, slotOut(sl))
				}
				return a.print(out, func(w *tabwriter.Writer) {
					fmt.Fprintln(w, "SLOTS\tGROUP\tSTATUS\tMIGRATE FROM\tMIGRATE TO")
					for i := 0; i < len(slots); {
						j := i
						for j+1 < len(slots) && slots[j+1].Id == slots[j].Id+1 && slots[j+1].GroupId == slots[i].GroupId && slots[j+1].State.Status == slots[i].State.Status && slots[j+1].State.MigrateStatus == slots[i].State.MigrateStatus {
							j++
						}
						r := strconv.Itoa(slots[i].Id)
						if j > i {
							r += "-" + strconv.Itoa(slots[j].Id)
						}
						ms := slots[i].State.MigrateStatus
						fmt.Fprintf(w, "%s\t%d\t%s\t%d\t%d\n", r, slots[i].GroupId, slots[i].State.Status, ms.From, ms.To)
						i = j + 1
					}
				})
			})
		},
	}
	listCmd.Flags().BoolVar(&migrating, "migrating", false, "only slots in migrate or pre_migrate")
	infoPassword := os.Getenv("REDIS_PASSWORD")
	infoCmd := &cobra.Command{
		Use: "info ID", Short: "Show one slot, its group, and how many of its keys the group's master holds", Args: cobra.ExactArgs(1),
		Long: `info shows slot ID, its group's servers, and how many keys of the slot the
group's master holds (and, while the slot migrates, how many are still on the
source group's master), counted as migrate-done counts them. A master that
cannot be asked is reported, not fatal: the slot is still shown.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := atoi("ID", args[0])
			if err != nil {
				return err
			}
			return a.read(cmd, func(ctx context.Context, s coord.Store) error {
				sl, err := models.GetSlot(ctx, s, a.product, id)
				if err != nil {
					return err
				}
				out := &SlotInfoOut{Product: a.product, Slot: slotOut(sl)}
				var g *models.ServerGroup
				if sl.GroupId != models.INVALID_ID {
					g, err = models.GetGroup(ctx, s, a.product, sl.GroupId)
					switch {
					case errors.Is(err, models.ErrGroupNotFound):
						out.KeysError = fmt.Sprintf("group %d does not exist", sl.GroupId)
					case err != nil:
						return err
					default:
						gout := groupOut(g)
						out.Group = &gout
						out.Keys, out.KeysError = a.slotKeys(ctx, s, sl.GroupId, id, infoPassword)
					}
				} else {
					out.KeysError = "the slot has no group"
				}
				migrating := sl.State.Status == models.SLOT_STATUS_MIGRATE || sl.State.Status == models.SLOT_STATUS_PRE_MIGRATE
				if migrating && sl.State.MigrateStatus.From != models.INVALID_ID {
					out.SourceKeys, out.SourceKeysError = a.slotKeys(ctx, s, sl.State.MigrateStatus.From, id, infoPassword)
				}
				return a.print(out, func(w *tabwriter.Writer) {
					fmt.Fprintf(w, "slot\t%d\n", sl.Id)
					fmt.Fprintf(w, "status\t%s\n", sl.State.Status)
					fmt.Fprintf(w, "group\t%d\n", sl.GroupId)
					if migrating {
						fmt.Fprintf(w, "migrating\tfrom group %d to group %d\n", sl.State.MigrateStatus.From, sl.State.MigrateStatus.To)
					}
					if g != nil {
						for _, sv := range g.Servers {
							fmt.Fprintf(w, "server\t%s (%s)\n", sv.Addr, sv.Type)
						}
					}
					fmt.Fprintf(w, "keys\t%s\n", keysText(out.Keys, out.KeysError))
					if migrating {
						fmt.Fprintf(w, "keys left on the source\t%s\n", keysText(out.SourceKeys, out.SourceKeysError))
					}
				})
			})
		},
	}
	infoCmd.Flags().StringVar(&infoPassword, "password", infoPassword, "Redis password (env REDIS_PASSWORD; never printed)")
	var toGroup int
	migrateCmd := &cobra.Command{
		Use: "migrate FROM [TO] --to GROUP", Short: "Mark slots migrating to GROUP: pre_migrate then migrate, each confirmed (moves no keys: see migrate-done)", Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			from, to, err := slotRange(args)
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("to") {
				return usageError{fmt.Errorf("--to GROUP is required")}
			}
			a.resume = fmt.Sprintf("run the same slot migrate again: slots already migrating to group %d are skipped, one left in pre_migrate is taken on", toGroup)
			return a.with(cmd, func(ctx context.Context, s coord.Store) error {
				n, err := migrate(ctx, s, a.product, from, to, toGroup, func(d, t int) { a.progress("migrating slots", d, t) })
				if err != nil {
					return err
				}
				return a.done(fmt.Sprintf("%d slots migrating to group %d", n, toGroup), &CountOut{Product: a.product, Count: n})
			})
		},
	}
	migrateCmd.Flags().IntVar(&toGroup, "to", 0, "target group")
	var doneForce bool
	donePassword := os.Getenv("REDIS_PASSWORD")
	doneCmd := &cobra.Command{
		Use: "migrate-done FROM [TO]", Short: "Mark migrated slots online in their new group, once their keys have left the old one (confirmed)",
		Long: `migrate-done marks the slots FROM..TO that are migrating online in their new
group. coordctl moves no keys: a migration tool does (Codis 2's dashboard, or
codis-config slot migrate, which send SLOTSMGRTSLOT). So migrate-done first
checks that the master of each slot's source group holds no key of it any
more: with SLOTSINFO where the server has it (Codis's Redis), otherwise by
SCANning every key and hashing it as Codis does (CRC-32 of the key or its
{hash tag}, modulo 1024), with a progress line. It refuses while keys are
left; --force skips the check (those keys are then lost to clients).`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			from, to, err := slotRange(args)
			if err != nil {
				return err
			}
			a.resume = "run the same slot migrate-done again: slots already online are skipped"
			return a.with(cmd, func(ctx context.Context, s coord.Store) error {
				if !doneForce {
					if err := a.checkMigrated(ctx, s, a.product, from, to, donePassword); err != nil {
						return err
					}
				}
				n, err := finishMigration(ctx, s, a.product, from, to, func(d, t int) { a.progress("finishing", d, t) })
				if err != nil {
					return err
				}
				return a.done(fmt.Sprintf("%d slots online", n), &CountOut{Product: a.product, Count: n})
			})
		},
	}
	doneCmd.Flags().BoolVar(&doneForce, "force", false, "skip the check that the keys have left the source group")
	doneCmd.Flags().StringVar(&donePassword, "password", donePassword, "Redis password for the check (env REDIS_PASSWORD; never printed)")
	c.AddCommand(initCmd, rangeCmd, setCmd, listCmd, infoCmd, migrateCmd, doneCmd)
	return c
}

func (a *app) groupCmd() *cobra.Command {
	c := &cobra.Command{Use: "group", Short: "Server groups: create, remove, add-server, remove-server, promote, list"}
	withGroup := func(use, short string, nargs int, fn func(cmd *cobra.Command, g *models.ServerGroup, args []string) error) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Args: cobra.ExactArgs(nargs), RunE: func(cmd *cobra.Command, args []string) error {
			id, err := atoi("GROUP", args[0])
			if err != nil {
				return err
			}
			return fn(cmd, models.NewServerGroup(a.product, id), args[1:])
		}}
	}
	var password, serverType string
	var repoint bool
	password = os.Getenv("REDIS_PASSWORD")
	create := withGroup("create GROUP", "Create a group (idempotent)", 1, func(cmd *cobra.Command, g *models.ServerGroup, _ []string) error {
		return a.with(cmd, func(ctx context.Context, s coord.Store) error {
			if err := g.Create(ctx, s); err != nil {
				return err
			}
			return a.groupDone(ctx, s, g.Id, fmt.Sprintf("group %d created", g.Id))
		})
	})
	remove := withGroup("remove GROUP", "Remove a group no slot uses", 1, func(cmd *cobra.Command, g *models.ServerGroup, _ []string) error {
		return a.with(cmd, func(ctx context.Context, s coord.Store) error {
			if err := g.Remove(ctx, s); err != nil {
				return err
			}
			left, err := models.ServerGroups(ctx, s, a.product)
			if err != nil {
				return err
			}
			out := &GroupsOut{Product: a.product, Groups: []GroupOut{}}
			for _, g := range left {
				out.Groups = append(out.Groups, groupOut(g))
			}
			return a.done(fmt.Sprintf("group %d removed", g.Id), out)
		})
	})
	var addForce bool
	add := withGroup("add-server GROUP ADDR", "Add a Redis server (a slave is pointed at the master; a master must be a reachable Redis master in no other group)", 2, func(cmd *cobra.Command, g *models.ServerGroup, args []string) error {
		if err := models.ValidateAddr(args[0]); err != nil {
			return usageError{err}
		}
		return a.with(cmd, func(ctx context.Context, s coord.Store) error {
			srv := models.NewServer(serverType, args[0])
			if !addForce {
				if err := checkNewServer(ctx, s, a.product, g.Id, srv, password); err != nil {
					return err
				}
			}
			if err := g.AddServer(ctx, s, srv, password); err != nil {
				return err
			}
			return a.groupDone(ctx, s, g.Id, fmt.Sprintf("%s added to group %d as %s", srv.Addr, g.Id, srv.Type))
		})
	})
	add.Flags().StringVar(&serverType, "type", models.SERVER_TYPE_SLAVE, "master or slave (the first server of a group is its master)")
	add.Flags().BoolVar(&addForce, "force", false, "skip the checks (the server in no other group; a master reachable and not a replica)")
	rm := withGroup("remove-server GROUP ADDR", "Remove a server (not the master)", 2, func(cmd *cobra.Command, g *models.ServerGroup, args []string) error {
		return a.with(cmd, func(ctx context.Context, s coord.Store) error {
			if err := g.RemoveServer(ctx, s, args[0]); err != nil {
				return err
			}
			return a.groupDone(ctx, s, g.Id, fmt.Sprintf("%s removed from group %d", args[0], g.Id))
		})
	})
	promote := withGroup("promote GROUP ADDR", "Make ADDR the master (confirmed); --repoint moves the other slaves to it", 2, func(cmd *cobra.Command, g *models.ServerGroup, args []string) error {
		return a.with(cmd, func(ctx context.Context, s coord.Store) error {
			if err := g.Promote(ctx, s, args[0], password); err != nil {
				return err
			}
			if repoint {
				if err := g.RepointSlaves(ctx, s, password); err != nil {
					return err
				}
			}
			return a.groupDone(ctx, s, g.Id, fmt.Sprintf("%s is the master of group %d", args[0], g.Id))
		})
	})
	promote.Flags().BoolVar(&repoint, "repoint", false, "point the other slaves at the new master")
	for _, cmd := range []*cobra.Command{add, promote} {
		cmd.Flags().StringVar(&password, "password", password, "Redis password (env REDIS_PASSWORD; never printed)")
	}
	list := &cobra.Command{Use: "list", Short: "List groups and their servers", Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
		return a.read(cmd, func(ctx context.Context, s coord.Store) error {
			groups, err := models.ServerGroups(ctx, s, a.product)
			if err != nil {
				return err
			}
			out := &GroupsOut{Product: a.product, Groups: []GroupOut{}}
			for _, g := range groups {
				out.Groups = append(out.Groups, groupOut(g))
			}
			return a.print(out, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "GROUP\tSERVER\tTYPE")
				for _, g := range groups {
					if len(g.Servers) == 0 {
						fmt.Fprintf(w, "%d\t-\t-\n", g.Id)
					}
					for _, sv := range g.Servers {
						fmt.Fprintf(w, "%d\t%s\t%s\n", g.Id, sv.Addr, sv.Type)
					}
				}
			})
		})
	}}
	c.AddCommand(create, remove, add, rm, promote, list)
	return c
}

func (a *app) proxyCmd() *cobra.Command {
	c := &cobra.Command{Use: "proxy", Short: "Proxies: list, online, offline, remove-fence"}
	list := &cobra.Command{Use: "list", Short: "List proxies and fences", Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
		return a.read(cmd, func(ctx context.Context, s coord.Store) error {
			out, err := a.proxies(ctx, s, nil)
			if err != nil {
				return err
			}
			return a.print(out, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "ID\tADDR\tSTATE\tPID\tSTARTED\tFENCE")
				for _, p := range out.Proxies {
					fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%v\n", p.ID, p.Addr, p.State, p.Pid, p.StartAt, p.Fence)
				}
				for _, addr := range out.DeadFences {
					fmt.Fprintf(w, "-\t%s\t(no proxy: dead fence)\t-\t-\ttrue\n", addr)
				}
			})
		})
	}}
	status := func(use, short, state string) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Args: cobra.ExactArgs(1), RunE: func(cmd *cobra.Command, args []string) error {
			return a.with(cmd, func(ctx context.Context, s coord.Store) error {
				if err := models.SetProxyStatus(ctx, s, a.product, args[0], state); err != nil {
					return err
				}
				out, err := a.proxies(ctx, s, func(p *models.ProxyInfo) bool { return p.Id == args[0] })
				if err != nil {
					return err
				}
				return a.done(fmt.Sprintf("proxy %s: %s", args[0], state), out)
			})
		}}
	}
	fence := &cobra.Command{Use: "remove-fence", Short: "Remove fences with no online proxy behind them", Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
		return a.with(cmd, func(ctx context.Context, s coord.Store) error {
			if err := models.ForceRemoveDeadFence(ctx, s, a.product); err != nil {
				return err
			}
			out, err := a.proxies(ctx, s, nil)
			if err != nil {
				return err
			}
			return a.done("dead fences removed", out)
		})
	}}
	c.AddCommand(list, status("online ID", "Set a proxy online", models.PROXY_STATE_ONLINE),
		status("offline ID", "Ask a proxy to shut down (mark_offline) and wait for it", models.PROXY_STATE_MARK_OFFLINE), fence)
	return c
}

func (a *app) actionCmd() *cobra.Command {
	c := &cobra.Command{Use: "action", Short: "Actions: list, show, gc"}
	list := &cobra.Command{Use: "list", Short: "List actions and who answered them", Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
		return a.read(cmd, func(ctx context.Context, s coord.Store) error {
			seqs, err := models.GetActionSeqList(ctx, s, a.product)
			if err != nil {
				return err
			}
			out := &ActionsOut{Product: a.product, Actions: []ActionOut{}}
			for _, seq := range seqs {
				act, err := a.action(ctx, s, seq)
				if errors.Is(err, coord.ErrNoNode) {
					continue // collected meanwhile
				}
				if err != nil {
					return err
				}
				act.Target = nil // action show has it
				out.Actions = append(out.Actions, act)
			}
			return a.print(out, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "SEQ\tTYPE\tTIME\tRECEIVERS\tANSWERED")
				for _, r := range out.Actions {
					fmt.Fprintf(w, "%010d\t%s\t%s\t%d\t%d\n", r.Seq, r.Type, time.Unix(r.Ts, 0).Format(time.DateTime), len(r.Receivers), len(r.Answered))
				}
			})
		})
	}}
	show := &cobra.Command{Use: "show SEQ", Short: "Show one action", Args: cobra.ExactArgs(1), RunE: func(cmd *cobra.Command, args []string) error {
		seq, err := atoi("SEQ", args[0])
		if err != nil {
			return err
		}
		return a.read(cmd, func(ctx context.Context, s coord.Store) error {
			act, err := a.action(ctx, s, seq)
			if err != nil {
				return err
			}
			return a.print(&ActionsOut{Product: a.product, Actions: []ActionOut{act}}, func(w *tabwriter.Writer) {
				target, _ := json.MarshalIndent(act.Target, "", "  ")
				fmt.Fprintf(w, "seq\t%010d\ntype\t%s\ndesc\t%s\ntime\t%s\nreceivers\t%s\nanswered\t%s\ntarget\t%s\n", act.Seq, act.Type, act.Desc,
					time.Unix(act.Ts, 0).Format(time.DateTime), strings.Join(act.Receivers, " "), strings.Join(act.Answered, " "), target)
			})
		})
	}}
	var keep int
	var olderThan time.Duration
	gc := &cobra.Command{Use: "gc", Short: "Delete old actions: --keep N newest, or --older-than DURATION", Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
		keepSet, olderSet := cmd.Flags().Changed("keep"), cmd.Flags().Changed("older-than")
		if keepSet == olderSet {
			return usageError{fmt.Errorf("give one of --keep or --older-than")}
		}
		a.resume = "run the same action gc again: it deletes what is left to delete"
		return a.with(cmd, func(ctx context.Context, s coord.Store) error {
			before, err := models.GetActionSeqList(ctx, s, a.product)
			if err != nil {
				return err
			}
			if keepSet && len(before) > keep+models.ActionGCFloor {
				if err := a.confirm(fmt.Sprintf("action gc deletes %d of the %d actions of %s (keeping %d newest: --keep %d plus %d proxies may still read)", len(before)-keep-models.ActionGCFloor, len(before), a.product, keep+models.ActionGCFloor, keep, models.ActionGCFloor)); err != nil {
					return err
				}
			}
			if olderSet {
				if err := a.confirm(fmt.Sprintf("action gc deletes the actions of %s older than %v (of %d)", a.product, olderThan, len(before))); err != nil {
					return err
				}
			}
			if keepSet {
				err = models.ActionGC(ctx, s, a.product, models.GC_TYPE_N, keep)
			} else {
				err = models.ActionGC(ctx, s, a.product, models.GC_TYPE_SEC, int(olderThan/time.Second))
			}
			if err != nil {
				return err
			}
			after, err := models.GetActionSeqList(ctx, s, a.product)
			if err != nil {
				return err
			}
			return a.done(fmt.Sprintf("deleted %d actions, %d left", len(before)-len(after), len(after)), &GCOut{Product: a.product, Deleted: len(before) - len(after), Left: len(after)})
		})
	}}
	gc.Flags().IntVar(&keep, "keep", 0, "keep the newest N actions, plus the 500 newest that Codis 2 proxies may still be reading")
	gc.Flags().DurationVar(&olderThan, "older-than", 0, "delete actions older than this")
	c.AddCommand(list, show, gc)
	return c
}

func (a *app) lockCmd() *cobra.Command {
	c := &cobra.Command{Use: "lock", Short: "The product lock (R/LOCK), taken around every change by coordctl, models and Codis 2 tools"}
	show := &cobra.Command{Use: "show", Short: "Who holds the product lock", Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
		return a.read(cmd, func(ctx context.Context, s coord.Store) error {
			info, node, err := models.LockHolder(ctx, s, a.product)
			if err != nil {
				return err
			}
			out := &LockOut{Product: a.product, Holder: holderOut(info, node)}
			return a.print(out, func(w *tabwriter.Writer) {
				if info == nil {
					fmt.Fprintln(w, "the product lock is free")
					return
				}
				fmt.Fprintf(w, "held by %v (%s)\n", info, node)
			})
		})
	}}
	remove := &cobra.Command{Use: "force-remove", Short: "Delete every lock node (only when its holder is known dead: see lock show)", Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
		return a.with(cmd, func(ctx context.Context, s coord.Store) error {
			info, node, err := models.LockHolder(ctx, s, a.product)
			if err != nil && info == nil && node == "" {
				return err
			}
			if err := models.ForceRemoveLock(ctx, s, a.product); err != nil {
				return err
			}
			out := &LockOut{Product: a.product, Holder: holderOut(info, node), Removed: node != ""}
			switch {
			case node == "":
				return a.done("the product lock was free: nothing removed", out)
			case info == nil:
				return a.done(fmt.Sprintf("removed the lock %s (its data was unreadable)", node), out)
			}
			return a.done(fmt.Sprintf("removed the lock held by %v (%s)", info, node), out)
		})
	}}
	c.AddCommand(show, remove)
	return c
}

// slotRange parses FROM [TO] (TO defaults to FROM).
func slotRange(args []string) (int, int, error) {
	from, err := atoi("FROM", args[0])
	if err != nil {
		return 0, 0, err
	}
	to := from
	if len(args) == 2 {
		if to, err = atoi("TO", args[1]); err != nil {
			return 0, 0, err
		}
	}
	return from, to, nil
}

func (a *app) productCmd() *cobra.Command {
	c := &cobra.Command{Use: "product", Short: "Products in the store: list, remove"}
	list := &cobra.Command{Use: "list", Short: "List the products in the store", Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
		a.opt.MustExist = true
		return a.with(cmd, func(ctx context.Context, s coord.Store) error {
			names, err := models.Products(ctx, s)
			if err != nil {
				return err
			}
			if names == nil {
				names = []string{}
			}
			return a.print(&ProductsOut{Products: names}, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "PRODUCT")
				for _, n := range names {
					fmt.Fprintln(w, n)
				}
			})
		})
	}}
	var force bool
	remove := &cobra.Command{Use: "remove", Short: "Delete the whole product (--product): slots, groups, actions, everything", Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
		return a.read(cmd, func(ctx context.Context, s coord.Store) error {
			proxies, err := models.ProxyList(ctx, s, a.product, nil)
			if err != nil && !force {
				return fmt.Errorf("%w (--force removes the product anyway)", err)
			}
			if len(proxies) > 0 && !force {
				ids := make([]string, len(proxies))
				for i, p := range proxies {
					ids[i] = p.Id
				}
				return fmt.Errorf("product %s has %d proxies registered (%s): they would lose their routing; mark them offline first, or --force", a.product, len(proxies), strings.Join(ids, ", "))
			}
			if info, _, err := models.LockHolder(ctx, s, a.product); err == nil && info != nil && !force {
				return fmt.Errorf("the product lock of %s is held by %v: a change is in progress; wait, or --force", a.product, info)
			}
			n := 0
			if err := coord.Walk(ctx, s, models.ProductPath(a.product), func(string, []byte, coord.Stat) error { n++; return nil }); err != nil {
				return err
			}
			if err := a.confirm(fmt.Sprintf("product remove deletes product %s from %s: %d nodes, not recoverable (coordctl dump saves it first)", a.product, a.conn.URL, n)); err != nil {
				return err
			}
			if err := coord.DeleteAll(ctx, s, models.ProductPath(a.product)); err != nil {
				return err
			}
			return a.done(fmt.Sprintf("product %s removed (%d nodes)", a.product, n), &RemovedOut{Product: a.product, Nodes: n})
		})
	}}
	remove.Flags().BoolVar(&force, "force", false, "remove even with proxies registered or the lock held")
	c.AddCommand(list, remove)
	return c
}

// checkNewServer refuses a server that another group of the product has, and
// a master that is not a reachable Redis master.
func checkNewServer(ctx context.Context, s coord.Store, product string, group int, srv *models.Server, passwd string) error {
	groups, err := models.ServerGroups(ctx, s, product)
	if err != nil {
		return err
	}
	for _, g := range groups {
		for _, other := range g.Servers {
			if other.Addr == srv.Addr && g.Id != group {
				return fmt.Errorf("%s is already in group %d (as %s): one Redis serves one group (--force skips the check)", srv.Addr, g.Id, other.Type)
			}
		}
	}
	if srv.Type != models.SERVER_TYPE_MASTER {
		return nil
	}
	info, err := redisc.Info(srv.Addr, passwd, "replication", 5*time.Second)
	if err != nil {
		return fmt.Errorf("the new master %s cannot be checked: %w (--force adds it anyway)", srv.Addr, err)
	}
	if role := info["role"]; role != "master" {
		return fmt.Errorf("the new master %s is a Redis %s (of %s:%s), read-only to clients: make it a master first or add it as a slave (--force adds it anyway)", srv.Addr, role, info["master_host"], info["master_port"])
	}
	return nil
}

// groupDone reports a change to group id with the group as it now is.
func (a *app) groupDone(ctx context.Context, s coord.Store, id int, msg string) error {
	g, err := models.GetGroup(ctx, s, a.product, id)
	if err != nil {
		return err
	}
	return a.done(msg, &GroupsOut{Product: a.product, Groups: []GroupOut{groupOut(g)}})
}

// proxies reads the product's proxies (those keep accepts; all when nil)
// and, when keep is nil, the fences no registered proxy stands behind.
func (a *app) proxies(ctx context.Context, s coord.Store, keep func(*models.ProxyInfo) bool) (*ProxiesOut, error) {
	list, err := models.ProxyList(ctx, s, a.product, keep)
	if err != nil {
		return nil, err
	}
	fences, err := models.GetFenceProxyMap(ctx, s, a.product)
	if err != nil {
		return nil, err
	}
	out := &ProxiesOut{Product: a.product, Proxies: []ProxyOut{}, DeadFences: []string{}}
	for _, p := range list {
		out.Proxies = append(out.Proxies, ProxyOut{ID: p.Id, Addr: p.Addr, State: p.State, Pid: p.Pid, StartAt: p.StartAt, Fence: fences[p.Addr]})
		delete(fences, p.Addr)
	}
	if keep == nil {
		for addr := range fences {
			out.DeadFences = append(out.DeadFences, addr)
		}
		sort.Strings(out.DeadFences)
	}
	return out, nil
}

// action reads action seq and who has answered it.
func (a *app) action(ctx context.Context, s coord.Store, seq int) (ActionOut, error) {
	var act models.Action
	if err := models.GetActionObject(ctx, s, a.product, int64(seq), &act, ""); err != nil {
		return ActionOut{}, err
	}
	ts, err := strconv.ParseInt(act.Ts, 10, 64)
	if err != nil {
		return ActionOut{}, fmt.Errorf("action %010d: %w: ts %q", seq, models.ErrMalformed, act.Ts)
	}
	answered, err := s.Children(ctx, fmt.Sprintf("%s/%010d", models.GetActionResponsePath(a.product), seq))
	if err != nil && !errors.Is(err, coord.ErrNoNode) {
		return ActionOut{}, err
	}
	if answered == nil {
		answered = []string{}
	}
	return ActionOut{Seq: seq, Type: string(act.Type), Desc: act.Desc, Ts: ts, Target: act.Target, Receivers: act.ReceiverIDs(), Answered: answered}, nil
}

// slotKeys counts the keys of slot id on the master of group gid: the count,
// or why there is none (no master, the master did not answer).
func (a *app) slotKeys(ctx context.Context, s coord.Store, gid, id int, passwd string) (*int64, string) {
	master, err := models.NewServerGroup(a.product, gid).Master(ctx, s)
	if err != nil {
		return nil, oneLine(err)
	}
	if master == nil {
		return nil, fmt.Sprintf("group %d has no master", gid)
	}
	counts, _, err := redisc.SlotKeys(master.Addr, passwd, map[int]bool{id: true}, models.DEFAULT_SLOT_NUM, 5*time.Second, func(done, total int64) {
		if total > 0 {
			a.progress(fmt.Sprintf("scanning %s for keys of slot %d", master.Addr, id), int(min(done, total)), int(total))
		}
	})
	if err != nil {
		return nil, fmt.Sprintf("%s (master of group %d): %s", master.Addr, gid, oneLine(err))
	}
	n := counts[id]
	return &n, ""
}

// keysText is a key count for people: the number, or why it is unknown.
func keysText(n *int64, why string) string {
	if n == nil {
		return "unknown: " + why
	}
	return strconv.FormatInt(*n, 10)
}
