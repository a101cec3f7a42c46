package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/redisc"
	"github.com/coordkit/coord/models"
	"github.com/coordkit/coord/storeurl"
)

// migrate starts migrating slots from..to to group: pre_migrate, then
// migrate, each confirmed. It returns how many slots it moved.
func migrate(ctx context.Context, s coord.Store, product string, from, to, group int, progress func(done, total int)) (int, error) {
	if from > to {
		return 0, fmt.Errorf("%w: from %d > to %d", models.ErrInvalidSlotId, from, to)
	}
	n := 0
	for id := from; id <= to; id++ {
		sl, err := models.GetSlot(ctx, s, product, id)
		if err != nil {
			return n, err
		}
		if sl.GroupId == group {
			continue
		}
		// A slot left in pre_migrate (a migrate cut short between its two
		// steps) is taken on: SetMigrateStatus announces pre_migrate again.
		if sl.GroupId < 0 || (sl.State.Status != models.SLOT_STATUS_ONLINE && sl.State.Status != models.SLOT_STATUS_PRE_MIGRATE) {
			return n, fmt.Errorf("slot %d is %s in group %d: only online, assigned slots migrate", id, sl.State.Status, sl.GroupId)
		}
		if err := sl.SetMigrateStatus(ctx, s, sl.GroupId, group); err != nil {
			return n, err
		}
		n++
		progress(id-from+1, to-from+1)
	}
	return n, nil
}

// checkMigrated fails unless the source master of every slot migrating in
// from..to holds no key of it any more: keys are moved by the migration
// tool (Codis 2's dashboard or codis-config slot migrate, SLOTSMGRTSLOT),
// not by coordctl, and a slot set online in its new group with keys left
// in the old one loses them for every client.
func (a *app) checkMigrated(ctx context.Context, s coord.Store, product string, from, to int, passwd string) error {
	bySource := map[int]map[int]bool{} // source group -> slots
	for id := from; id <= to; id++ {
		sl, err := models.GetSlot(ctx, s, product, id)
		if err != nil {
			return err
		}
		if sl.State.Status != models.SLOT_STATUS_MIGRATE {
			continue
		}
		src := sl.State.MigrateStatus.From
		if bySource[src] == nil {
			bySource[src] = map[int]bool{}
		}
		bySource[src][id] = true
	}
	for src, slots := range bySource {
		master, err := models.NewServerGroup(product, src).Master(ctx, s)
		if err != nil {
			return fmt.Errorf("group %d, the source of the migration: %w (--force skips the check)", src, err)
		}
		if master == nil {
			return fmt.Errorf("group %d, the source of the migration, has no master to check (--force skips the check)", src)
		}
		counts, method, err := redisc.SlotKeys(master.Addr, passwd, slots, models.DEFAULT_SLOT_NUM, 10*time.Second, func(done, total int64) {
			if total > 0 {
				a.progress(fmt.Sprintf("scanning %s for keys of migrated slots", master.Addr), int(min(done, total)), int(total))
			}
		})
		if err != nil {
			return fmt.Errorf("checking that the migrated slots left group %d: %w (--force skips the check)", src, err)
		}
		if len(counts) > 0 {
			ids := make([]int, 0, len(counts))
			total := int64(0)
			for id, n := range counts {
				ids = append(ids, id)
				total += n
			}
			sort.Ints(ids)
			shown := make([]string, 0, 10)
			for _, id := range ids[:min(len(ids), 10)] {
				shown = append(shown, strconv.Itoa(id))
			}
			return fmt.Errorf("%d keys of %d migrating slots (%s) are still on %s, the master of group %d (counted by %s): move them first (coordctl moves no keys: Codis 2's dashboard or codis-config slot migrate do, with SLOTSMGRTSLOT), or --force to mark the slots done anyway and lose those keys for clients",
				total, len(ids), strings.Join(shown, ","), master.Addr, src, method)
		}
	}
	return nil
}

// finishMigration marks migrating slots online in their new group.
func finishMigration(ctx context.Context, s coord.Store, product string, from, to int, progress func(done, total int)) (int, error) {
	n := 0
	for id := from; id <= to; id++ {
		sl, err := models.GetSlot(ctx, s, product, id)
		if err != nil {
			return n, err
		}
		if sl.State.Status != models.SLOT_STATUS_MIGRATE {
			continue
		}
		sl.State.Status = models.SLOT_STATUS_ONLINE
		sl.State.MigrateStatus = models.SlotMigrateStatus{From: models.INVALID_ID, To: models.INVALID_ID}
		if err := sl.Update(ctx, s); err != nil {
			return n, err
		}
		n++
		progress(id-from+1, to-from+1)
	}
	return n, nil
}

func (a *app) dumpCmd() *cobra.Command {
	var all bool
	c := &cobra.Command{Use: "dump", Short: "Print the whole product as JSON", Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
		return a.read(cmd, func(ctx context.Context, s coord.Store) error {
			var keep models.DumpFilter
			if !all {
				keep = models.ConfigOnly
			}
			snap, err := models.Dump(ctx, s, a.product, keep)
			if err != nil {
				return err
			}
			if len(snap.Nodes) == 0 {
				return fmt.Errorf("product %s: nothing to dump", a.product)
			}
			enc := json.NewEncoder(a.out)
			enc.SetIndent("", "  ")
			return enc.Encode(snap)
		})
	}}
	c.Flags().BoolVar(&all, "all", false, "include ephemeral nodes and the action history")
	return c
}

func (a *app) loadCmd() *cobra.Command {
	var as string
	c := &cobra.Command{Use: "load FILE", Short: "Create a product from a dump (- reads stdin); the product must not exist", Args: cobra.ExactArgs(1), RunE: func(cmd *cobra.Command, args []string) error {
		var r io.Reader = os.Stdin
		if args[0] != "-" {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			r = f
		}
		var snap models.Snapshot
		dec := json.NewDecoder(r)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&snap); err != nil {
			return fmt.Errorf("%s: not a coordctl dump: %v", args[0], err)
		}
		return a.with(cmd, func(ctx context.Context, s coord.Store) error {
			product := snap.Product
			if cmd.Flags().Changed("product") {
				product = a.product
			}
			if as != "" {
				product = as
			}
			a.resume = fmt.Sprintf("remove the partial product (coordctl --product %s product remove --force) and load again", product)
			if err := models.Load(ctx, s, &snap, product, func(d, t int) { a.progress("loading", d, t) }); err != nil {
				return err
			}
			return a.done(fmt.Sprintf("loaded %d nodes into %s", len(snap.Nodes), product), &CountOut{Product: product, Count: len(snap.Nodes)})
		})
	}}
	c.Flags().StringVar(&as, "as", "", "load under this product name")
	return c
}

func (a *app) copyCmd() *cobra.Command {
	var from, to string
	c := &cobra.Command{
		Use:   "copy --from STORE --to STORE",
		Short: "Copy a product between stores, verified by comparing dumps",
		Long: `copy reads the product from one store and writes it to another (for example
from ZooKeeper to etcd), then dumps both and compares them. It copies what
defines the product (slots, groups, servers, fences); the nodes of live
sessions (proxies, locks) and the action history stay behind. The product
must not exist in the target.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || to == "" {
				return usageError{fmt.Errorf("copy needs --from and --to")}
			}
			if sameStore(from, to, a.opt.DataDir) {
				return usageError{fmt.Errorf("copy --from and --to name the same store (%s)", storeurl.Redact(from))}
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			srcOpt := a.opt
			srcOpt.MustExist = true
			src, closeSrc, err := a.openURLWith(ctx, from, srcOpt)
			if err != nil {
				return fmt.Errorf("--from: %w", err)
			}
			defer closeSrc()
			dst, closeDst, err := a.openURL(ctx, to)
			if err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			defer closeDst()
			// The fences of proxies alive on the source stay behind: those
			// proxies do not follow the copy, and their fences would refuse
			// every confirmed action there. Dead proxies' fences come along.
			live, err := liveFences(ctx, src, a.product)
			if err != nil {
				return err
			}
			keep := func(rel string, ephemeral bool) bool {
				return models.ConfigOnly(rel, ephemeral) && !live[models.ProductPath(a.product)+"/"+rel]
			}
			snap, err := models.Dump(ctx, src, a.product, keep)
			if err != nil {
				return err
			}
			if len(snap.Nodes) == 0 {
				return fmt.Errorf("product %s not found in %s", a.product, storeurl.Redact(from))
			}
			a.resume = fmt.Sprintf("remove the partial copy (coordctl --store %s --product %s product remove --force) and copy again", storeurl.Redact(to), a.product)
			if err := models.Load(ctx, dst, snap, a.product, func(d, t int) { a.progress("copying", d, t) }); err != nil {
				return err
			}
			// Verify: the target's dump is the source's.
			check, err := models.Dump(ctx, dst, a.product, keep)
			if err != nil {
				return err
			}
			want, _ := json.Marshal(snap)
			got, _ := json.Marshal(check)
			if !bytes.Equal(want, got) {
				return fmt.Errorf("verification failed: the copy differs from the source (%d nodes read, %d in the copy); was the source changing?", len(snap.Nodes), len(check.Nodes))
			}
			msg := fmt.Sprintf("copied %d nodes of %s; dumps match", len(snap.Nodes), a.product)
			if len(live) > 0 {
				msg += fmt.Sprintf(" (%d fences of proxies live on the source left behind)", len(live))
			}
			return a.done(msg, &CopyOut{Product: a.product, Nodes: len(snap.Nodes), LiveFencesLeft: len(live)})
		},
	}
	c.Flags().StringVar(&from, "from", "", "source store URL")
	c.Flags().StringVar(&to, "to", "", "target store URL")
	return c
}

// liveFences are the fence paths of the proxies registered now.
func liveFences(ctx context.Context, s coord.Store, product string) (map[string]bool, error) {
	proxies, err := models.ProxyList(ctx, s, product, nil)
	if err != nil {
		return nil, err
	}
	live := map[string]bool{}
	for _, p := range proxies {
		live[coord.Join(models.GetProxyFencePath(product), p.Addr)] = true
	}
	return live, nil
}

// sameStore reports whether two store URLs name the same embedded
// directory or the same URL.
func sameStore(a, b, dataDir string) bool {
	norm := func(u string) string {
		if u == "" || u == "embedded" || strings.HasPrefix(u, "embedded:") {
			d := strings.TrimPrefix(strings.TrimPrefix(strings.TrimPrefix(u, "embedded"), ":"), "//")
			if d == "" {
				d = dataDir
			}
			if abs, err := filepath.Abs(d); err == nil {
				d = abs
			}
			return "embedded:" + filepath.Clean(d)
		}
		return strings.TrimSuffix(u, "/")
	}
	return norm(a) == norm(b)
}

// openURL opens another store than --store.
func (a *app) openURL(ctx context.Context, raw string) (coord.Store, func(), error) {
	return a.openURLWith(ctx, raw, a.opt)
}

func (a *app) openURLWith(ctx context.Context, raw string, opt storeurl.Options) (coord.Store, func(), error) {
	conn, err := storeurl.Dial(ctx, raw, secretsFor(raw, opt))
	if err != nil {
		return nil, nil, err
	}
	s, err := conn.Open(ctx)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return s, func() { s.Close(); conn.Close() }, nil
}

// secretsFor keeps, of the secrets in opt, those the store URL raw can use,
// for copy, whose two URLs share the flags and the environment: the token
// for a consul:// URL, the store password for a URL that names its user
// without one. (A single --store gets them all, and a misplaced one is
// refused.)
func secretsFor(raw string, opt storeurl.Options) storeurl.Options {
	u, err := url.Parse(raw)
	if err != nil {
		return opt // Dial says what is wrong with it
	}
	if u.Scheme != "consul" {
		opt.Token, opt.TokenFile = "", ""
	}
	if _, has := u.User.Password(); u.User == nil || has {
		opt.Password, opt.PasswordFile = "", ""
	}
	return opt
}
