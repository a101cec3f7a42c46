package main

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/models"
	"github.com/coordkit/coord/models/proxysim"
)

// step is one timed step of the demo.
type step struct {
	Name     string        `json:"name"`
	Actions  int           `json:"confirmed_actions"`
	Duration time.Duration `json:"duration_ns"`
}

func (a *app) demoCmd() *cobra.Command {
	var proxies int
	var force bool
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run a product end to end with in-process proxies, and time each step",
		Long: `demo (re)creates the product "demo" in the embedded store (another only
when --product or --store is given on the command line: COORD_STORE and
COORD_PRODUCT do not apply to it): 1024 slots, two groups, all slots assigned.
It replaces an existing product only when that is "demo" in the embedded
store, or with --force.
Then it starts in-process proxies that answer actions as Codis 2.x proxies
do, sets them online, reassigns a range of slots and migrates a few, every
change confirmed by every proxy, and prints how long each step took. The
proxies then shut down cleanly; the product stays for you to inspect
(coordctl slot list, group list, action list).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if proxies < 1 {
				return usageError{fmt.Errorf("--proxies %d: the demo needs at least one proxy", proxies)}
			}
			if !cmd.Flags().Changed("store") {
				a.storeURL = "embedded"
			}
			if !cmd.Flags().Changed("product") {
				a.product = "demo"
			}
			return a.with(cmd, func(ctx context.Context, s coord.Store) error {
				_, exists, err := s.Exists(ctx, models.ProductPath(a.product))
				if err != nil {
					return err
				}
				if exists && !force && !(a.conn.Kind == "embedded" && a.product == "demo") {
					return fmt.Errorf("product %s exists in %s and the demo would delete it: --force to replace it, or pick another --product", a.product, a.conn.URL)
				}
				if !a.jsonOut {
					fmt.Fprintf(a.out, "store %s, product %s\n", a.conn.URL, a.product)
				}
				steps, err := a.demo(ctx, s, proxies)
				if err != nil {
					return err
				}
				out := &DemoOut{Store: a.conn.URL, Product: a.product, Steps: []StepOut{}}
				for _, st := range steps {
					out.Steps = append(out.Steps, StepOut{Name: st.Name, Actions: st.Actions, Micros: micros(st.Duration)})
				}
				return a.print(out, func(w *tabwriter.Writer) {
					fmt.Fprintln(w, "STEP\tCONFIRMED ACTIONS\tTOOK\tPER ACTION\tCODIS 2 AT LEAST")
					for _, st := range steps {
						per, floor := "-", "-"
						if st.Actions > 0 {
							per = (st.Duration / time.Duration(st.Actions)).Round(time.Microsecond * 100).String()
							floor = (time.Duration(st.Actions) * 500 * time.Millisecond).String()
						}
						fmt.Fprintf(w, "%s\t%d\t%v\t%s\t%s\n", st.Name, st.Actions, st.Duration.Round(time.Millisecond), per, floor)
					}
				})
			})
		},
	}
	c.Flags().IntVar(&proxies, "proxies", 3, "how many in-process proxies")
	c.Flags().BoolVar(&force, "force", false, "replace the product even if it is not the embedded store's demo product")
	return c
}

func (a *app) demo(ctx context.Context, s coord.Store, nproxies int) ([]step, error) {
	product := a.product
	var steps []step
	timed := func(name string, actions int, fn func() error) error {
		start := time.Now()
		if err := fn(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		steps = append(steps, step{name, actions, time.Since(start)})
		return nil
	}
	say := func(format string, args ...interface{}) {
		if !a.jsonOut {
			fmt.Fprintf(a.out, "  "+format+"\n", args...)
		}
	}
	if err := timed("reset product", 0, func() error {
		return coord.DeleteAll(ctx, s, models.ProductPath(product))
	}); err != nil {
		return nil, err
	}
	if err := timed("init 1024 slots", 0, func() error {
		return models.InitSlotSet(ctx, s, product, models.DEFAULT_SLOT_NUM)
	}); err != nil {
		return nil, err
	}
	if err := timed("create 2 groups", 0, func() error {
		for id := 1; id <= 2; id++ {
			g := models.NewServerGroup(product, id)
			if err := g.Create(ctx, s); err != nil {
				return err
			}
			if err := g.AddServer(ctx, s, models.NewServer(models.SERVER_TYPE_MASTER, fmt.Sprintf("127.0.0.1:%d", 6378+id)), ""); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	say("slots and groups ready")
	if err := timed("assign slots 0-1023 to group 1", 0, func() error {
		return models.SetSlotRange(ctx, s, product, 0, 1023, 1, models.SLOT_STATUS_ONLINE)
	}); err != nil {
		return nil, err
	}
	// In-process proxies, each with its own session.
	var running []*proxysim.Proxy
	defer func() {
		for _, p := range running {
			p.Stop()
		}
	}()
	if err := timed(fmt.Sprintf("start %d proxies, set online", nproxies), 0, func() error {
		for i := 1; i <= nproxies; i++ {
			ps, err := a.conn.Open(ctx)
			if err != nil {
				return err
			}
			info := models.ProxyInfo{Id: fmt.Sprintf("proxy_%d", i), Addr: fmt.Sprintf("127.0.0.1:%d", 19000+i),
				DebugVarAddr: fmt.Sprintf("127.0.0.1:%d", 11000+i), Pid: os.Getpid()}
			p, err := proxysim.Start(ctx, ps, product, info, proxysim.Options{})
			if err != nil {
				return err
			}
			running = append(running, p)
			if err := models.SetProxyStatus(ctx, s, product, info.Id, models.PROXY_STATE_ONLINE); err != nil {
				return err
			}
			select { // up and watching for actions
			case <-p.Ready():
			case <-p.Done():
				return fmt.Errorf("proxy %s stopped going online: %v", info.Id, p.Err())
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	say("%d proxies online", nproxies)
	// Reassign 960-1023 to group 2: take them offline (one confirmed
	// action each), then assign the range (one confirmed action).
	const lo, hi = 960, 1023
	if err := timed(fmt.Sprintf("take slots %d-%d offline", lo, hi), hi-lo+1, func() error {
		for id := lo; id <= hi; id++ {
			sl, err := models.GetSlot(ctx, s, product, id)
			if err != nil {
				return err
			}
			sl.State.Status = models.SLOT_STATUS_OFFLINE
			if err := sl.Update(ctx, s); err != nil {
				return err
			}
			a.progress("offline", id-lo+1, hi-lo+1)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := timed(fmt.Sprintf("range-set %d-%d to group 2", lo, hi), 1, func() error {
		return models.SetSlotRange(ctx, s, product, lo, hi, 2, models.SLOT_STATUS_ONLINE)
	}); err != nil {
		return nil, err
	}
	say("slots %d-%d assigned to group 2, confirmed by every proxy", lo, hi)
	const mlo, mhi = 0, 31
	if err := timed(fmt.Sprintf("migrate slots %d-%d to group 2", mlo, mhi), 2*(mhi-mlo+1), func() error {
		_, err := migrate(ctx, s, product, mlo, mhi, 2, func(d, t int) { a.progress("migrating", d, t) })
		return err
	}); err != nil {
		return nil, err
	}
	if err := timed(fmt.Sprintf("finish migration of %d-%d", mlo, mhi), mhi-mlo+1, func() error {
		_, err := finishMigration(ctx, s, product, mlo, mhi, func(d, t int) { a.progress("finishing", d, t) })
		return err
	}); err != nil {
		return nil, err
	}
	say("slots %d-%d migrated to group 2", mlo, mhi)
	if err := timed("proxies shut down (mark_offline)", 0, func() error {
		for _, p := range running {
			if err := models.SetProxyStatus(ctx, s, product, p.Info().Id, models.PROXY_STATE_MARK_OFFLINE); err != nil {
				return err
			}
			<-p.Done()
		}
		running = nil
		return nil
	}); err != nil {
		return nil, err
	}
	answered := 0
	seqs, err := models.GetActionSeqList(ctx, s, product)
	if err == nil {
		for _, seq := range seqs {
			kids, _ := s.Children(ctx, fmt.Sprintf("%s/%010d", models.GetActionResponsePath(product), seq))
			answered += len(kids)
		}
	}
	say("%d actions written, %d answers from proxies; the product stays in the store", len(seqs), answered)
	return steps, nil
}
