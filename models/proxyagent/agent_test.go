package proxyagent_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/backends"
	"github.com/coordkit/coord/models"
	"github.com/coordkit/coord/models/proxyagent"
	"github.com/coordkit/coord/models/proxysim"
)

func TestMain(m *testing.M) { backends.Main(m) }

const product = "agent"

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// noLeaks checks, once the test and its subtests are over and their stores
// closed, that no goroutine of an agent is left running.
func noLeaks(t *testing.T) {
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			buf := make([]byte, 1<<22)
			stacks := string(buf[:runtime.Stack(buf, true)])
			if !strings.Contains(stacks, "proxyagent.(*Agent)") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("agent goroutines left after the test:\n%s", stacks)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

func setup(t *testing.T, s coord.Store) {
	t.Helper()
	ctx := ctxT(t)
	must(t, models.InitSlotSet(ctx, s, product, models.DEFAULT_SLOT_NUM))
	g := models.NewServerGroup(product, 1)
	must(t, g.Create(ctx, s))
	must(t, g.AddServer(ctx, s, models.NewServer(models.SERVER_TYPE_MASTER, "127.0.0.1:6379"), ""))
	must(t, models.SetSlotRange(ctx, s, product, 0, models.DEFAULT_SLOT_NUM-1, 1, models.SLOT_STATUS_ONLINE))
}

// recorder is a program's Handle: it records each delivery and can be held.
type recorder struct {
	mu      sync.Mutex
	got     []proxyagent.Delivery
	resyncs int
	hold    chan struct{} // when set, Handle waits for it to close
}

func (r *recorder) handle(ctx context.Context, d proxyagent.Delivery) error {
	r.mu.Lock()
	hold := r.hold
	r.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	r.got = append(r.got, d)
	r.mu.Unlock()
	return nil
}

func (r *recorder) resync(context.Context) error {
	r.mu.Lock()
	r.resyncs++
	r.mu.Unlock()
	return nil
}

func (r *recorder) seqs() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int64
	for _, d := range r.got {
		out = append(out, d.Seq)
	}
	return out
}

func startAgent(t *testing.T, s coord.Store, id string, r *recorder) *proxyagent.Agent {
	t.Helper()
	ctx := ctxT(t)
	info := models.ProxyInfo{Id: id, Addr: "127.0.0.1:" + fmt.Sprint(19100+len(id)+int(id[len(id)-1])), Pid: os.Getpid(), StartAt: time.Now().String()}
	a, err := proxyagent.Start(ctx, s, product, info, proxyagent.Options{Handle: r.handle, Resync: r.resync})
	must(t, err)
	t.Cleanup(func() { _ = a.Stop(context.Background()) })
	must(t, models.SetProxyStatus(ctx, s, product, id, models.PROXY_STATE_ONLINE))
	select {
	case <-a.Online():
	case <-a.Done():
		t.Fatalf("agent stopped before going online: %v", a.Err())
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	return a
}

// actionSeqs lists the actions now in R/actions.
func actionSeqs(t *testing.T, s coord.Store) []int64 {
	t.Helper()
	got, err := models.GetActionSeqList(ctxT(t), s, product)
	must(t, err)
	out := make([]int64, len(got))
	for i, n := range got {
		out[i] = int64(n)
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func answered(t *testing.T, s coord.Store, seq int64, id string) bool {
	t.Helper()
	_, ok, err := s.Exists(ctxT(t), coord.Join(models.GetActionResponsePath(product), fmt.Sprintf("%010d", seq), id))
	must(t, err)
	return ok
}

// TestEveryActionInOrder: actions that pile up while the program is busy
// are all delivered, in order, once each, and each is answered; a Codis 2
// proxy (proxysim) in the same product answers what it answers, and
// confirmed actions are confirmed by both.
func TestEveryActionInOrder(t *testing.T) {
	noLeaks(t)
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		setup(t, s)
		r := &recorder{}
		a := startAgent(t, open(), "agent_1", r)
		codis, err := proxysim.Start(ctx, open(), product, models.ProxyInfo{Id: "codis_1", Addr: "127.0.0.1:19000", Pid: os.Getpid(), StartAt: "codis"}, proxysim.Options{})
		must(t, err)
		defer codis.Stop()
		must(t, models.SetProxyStatus(ctx, s, product, "codis_1", models.PROXY_STATE_ONLINE))
		<-codis.Ready()

		// Confirmed actions: both answer.
		for i := 0; i < 3; i++ {
			sl, err := models.GetSlot(ctx, s, product, i)
			must(t, err)
			sl.State.LastOpTs = fmt.Sprint(i + 1)
			must(t, sl.Update(ctx, s))
		}
		confirmed := actionSeqs(t, s)
		for _, seq := range confirmed[len(confirmed)-3:] {
			if !answered(t, s, seq, "agent_1") || !answered(t, s, seq, "codis_1") {
				t.Fatalf("confirmed action %d not answered by both", seq)
			}
		}

		// Busy program: five actions appear while it holds the first.
		hold := make(chan struct{})
		r.mu.Lock()
		r.hold = hold
		r.mu.Unlock()
		for i := 0; i < 5; i++ {
			// Not confirmed, and the wait for the previous one bounded
			// short: they pile up.
			must(t, models.NewActionWithTimeout(ctx, s, product, models.ACTION_TYPE_SLOT_CHANGED, i, "", false, 20))
		}
		r.mu.Lock()
		r.hold = nil
		r.mu.Unlock()
		close(hold)
		all := actionSeqs(t, s)
		want := all[slices.Index(all, confirmed[len(confirmed)-3]):]
		waitFor(t, "every action delivered", func() bool { return a.Last() == all[len(all)-1] })
		if got := r.seqs(); !slices.Equal(got[len(got)-len(want):], want) {
			t.Fatalf("delivered %v, want (at the end) %v, each once and in order", got, want)
		}
		if !slices.IsSorted(r.seqs()) || len(slices.Compact(slices.Clone(r.seqs()))) != len(r.seqs()) {
			t.Fatalf("deliveries out of order or repeated: %v", r.seqs())
		}
		for _, seq := range want {
			if !answered(t, s, seq, "agent_1") {
				t.Fatalf("action %d not answered by the agent", seq)
			}
		}
		for _, d := range r.got {
			if !d.Receiver || d.Action == nil {
				t.Fatalf("delivery %d: receiver %v, action %v", d.Seq, d.Receiver, d.Action)
			}
		}
		if r.resyncs != 1 {
			t.Fatalf("Resync called %d times, want once (going online)", r.resyncs)
		}
		// mark_offline: clean shutdown, fence and node gone, Err nil.
		must(t, models.SetProxyStatus(ctx, s, product, "agent_1", models.PROXY_STATE_MARK_OFFLINE))
		<-a.Done()
		if a.Err() != nil {
			t.Fatalf("after mark_offline: %v", a.Err())
		}
		fences, err := models.GetFenceProxyMap(ctx, s, product)
		must(t, err)
		if fences[a.Info().Addr] {
			t.Fatal("the fence is left after a clean shutdown")
		}
	})
}

// TestSessionLoss: the agent's session is expired as the server expires a
// silent owner's. It registers again under a new session (node, as it was,
// and fence), delivers the actions announced meanwhile, in order, none
// twice, and confirmed actions work again; a Codis 2 proxy in its place would
// have exited, leaving its fence to refuse every confirmed action.
func TestSessionLoss(t *testing.T) {
	noLeaks(t)
	backends.RunExpire(t, func(t *testing.T, open func() coord.Store, expire func(coord.Store)) {
		s := open()
		ctx := ctxT(t)
		setup(t, s)
		r := &recorder{}
		as := open()
		a := startAgent(t, as, "agent_1", r)
		sess, err := as.Session(ctx)
		must(t, err)
		sl, err := models.GetSlot(ctx, s, product, 1)
		must(t, err)
		must(t, sl.Update(ctx, s))
		before := a.Last()

		expire(as)
		<-sess.Done()
		// Announced while the agent may be unregistered: not confirmed,
		// so the fence does not refuse it.
		must(t, models.NewActionWithTimeout(ctx, s, product, models.ACTION_TYPE_SLOT_CHANGED, 7, "", false, 20))
		gap := actionSeqs(t, s)
		waitFor(t, "the agent registered again", func() bool {
			st, ok, err := s.Exists(ctx, models.GetProxyPath(product)+"/agent_1")
			return a.Registrations() >= 2 && err == nil && ok && st.Owner != sess.ID()
		})
		pi, err := models.GetProxyInfo(ctx, s, product, "agent_1")
		must(t, err)
		if pi.State != models.PROXY_STATE_ONLINE {
			t.Fatalf("registered again as %q", pi.State)
		}
		if st, _, _ := s.Exists(ctx, models.GetProxyPath(product)+"/agent_1"); !st.Ephemeral || st.Owner == sess.ID() {
			t.Fatalf("the node is not an ephemeral of the new session: %+v", st)
		}
		// Confirmed actions work again (fence and node both there).
		sl, err = models.GetSlot(ctx, s, product, 2)
		must(t, err)
		must(t, sl.Update(ctx, s))
		all := actionSeqs(t, s)
		waitFor(t, "delivery of everything", func() bool { return a.Last() == all[len(all)-1] })
		got := r.seqs()
		if !slices.Contains(got, gap[len(gap)-1]) {
			t.Fatalf("the action announced during the session loss (%d) was not delivered: %v", gap[len(gap)-1], got)
		}
		if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
			t.Fatalf("deliveries out of order or repeated: %v", got)
		}
		var after []int64
		for _, seq := range all {
			if seq > before {
				after = append(after, seq)
			}
		}
		if !slices.Equal(got[len(got)-len(after):], after) {
			t.Fatalf("delivered %v, want every action after %d: %v", got, before, after)
		}
		must(t, a.Stop(ctx))
		if !errors.Is(a.Err(), proxyagent.ErrStopped) {
			t.Fatalf("after Stop: %v", a.Err())
		}
		if _, err := models.GetProxyInfo(ctx, s, product, "agent_1"); !errors.Is(err, coord.ErrNoNode) {
			t.Fatalf("node after Stop: %v", err)
		}
	})
}

// TestMemberLoss: on each 3-member cluster, the leader stops while an
// agent is online and starts again. The agent rides it out: it is still
// online (under the same session, unless the election outlasted what the
// client could vouch for: then under a new one, its node made again), and
// the confirmed actions announced during and after the loss are delivered
// and answered by it. Then the quorum goes for two seconds: the agent is
// still running afterwards and answers. (A Codis 2 proxy's view of the
// same loss is its session's: see TestSessionLoss.)
func TestMemberLoss(t *testing.T) {
	noLeaks(t)
	for _, b := range backends.Clusters() {
		t.Run(b.Name, func(t *testing.T) {
			ns := backends.Namespace(t)
			s := b.Open(t, ns)
			ctx := ctxT(t)
			setup(t, s)
			r := &recorder{}
			agentStore := b.Open(t, ns)
			a := startAgent(t, agentStore, "agent_1", r)
			sess, err := agentStore.Session(ctx)
			must(t, err)

			sl, err := models.GetSlot(ctx, s, product, 1)
			must(t, err)
			// announce makes a confirmed action (slot 1's state says which).
			// A refusal for the agent's fence (ErrFenceWithoutProxy) is
			// allowed only while the agent registers again, its store having
			// given up on its session (the leader or the quorum away longer
			// than the session could be vouched for, which a loaded machine
			// sees): the agent deletes its old node to make it again, and an
			// action announced in between finds the fence alone, as a Codis
			// dashboard would. It is announced again once the agent is back.
			announce := func(what string) {
				t.Helper()
				regs := a.Registrations()
				sl.State.LastOpTs = what
				err := sl.Update(ctx, s)
				if errors.Is(err, models.ErrFenceWithoutProxy) {
					t.Logf("%s: refused while the agent registered again: %v", what, err)
					waitFor(t, "the agent registered again after a refusal for its fence ("+err.Error()+")", func() bool {
						_, ok, err := s.Exists(ctx, coord.Join(models.GetProxyPath(product), "agent_1"))
						return a.Registrations() > regs && err == nil && ok
					})
					err = sl.Update(ctx, s)
				}
				must(t, err)
			}

			members := b.Members(t)
			lead := members.Leader(t)
			members.Stop(t, lead)
			// A confirmed action announced while the leader is down (the
			// call rides out the election).
			announce("during")
			members.Start(t, lead)
			announce("after")

			seqs := actionSeqs(t, s)
			for _, seq := range seqs[len(seqs)-2:] {
				if !answered(t, s, seq, "agent_1") {
					// Say what the action and the agent were.
					resp, _ := s.Children(ctx, coord.Join(models.GetActionResponsePath(product), fmt.Sprintf("%010d", seq)))
					info, perr := models.GetProxyInfo(ctx, s, product, "agent_1")
					t.Fatalf("confirmed action %d (of %v) not answered by the agent: answers %v; agent last %d, err %v; proxy %+v (%v)",
						seq, seqs, resp, a.Last(), a.Err(), info, perr)
				}
			}
			waitFor(t, "the last action delivered", func() bool { return a.Last() == seqs[len(seqs)-1] })
			select {
			case <-a.Done():
				t.Fatalf("the agent stopped over the loss of the leader: %v", a.Err())
			default:
			}
			if sess.Err() != nil {
				// The election outlasted what the client could vouch for:
				// the agent registered again under a new session.
				t.Logf("the agent's session ended over the loss of the leader (%v); registrations %d", sess.Err(), a.Registrations())
				waitFor(t, "the agent registered again after its session ended", func() bool { return a.Registrations() > 1 })
			}

			// The quorum goes for two seconds and comes back (after a
			// 3-member etcd recovered, proxies used to exit): the agent
			// is still there and answers the next confirmed action
			// (under a new session if the old one was lost meanwhile).
			lead = members.Leader(t)
			var stopped []int
			for i := 0; i < 3; i++ {
				if i != lead && len(stopped) < 2 {
					members.Stop(t, i)
					stopped = append(stopped, i)
				}
			}
			time.Sleep(2 * time.Second)
			for _, i := range stopped {
				members.Start(t, i)
			}
			announce("after the quorum came back")
			seqs = actionSeqs(t, s)
			if last := seqs[len(seqs)-1]; !answered(t, s, last, "agent_1") {
				t.Fatalf("the confirmed action %d after the quorum came back: not answered by the agent", last)
			}
			select {
			case <-a.Done():
				t.Fatalf("the agent stopped over the loss of the quorum: %v", a.Err())
			default:
			}
		})
	}
}
