package models_test

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/backends"
	"github.com/coordkit/coord/models"
	"github.com/coordkit/coord/models/proxysim"
)

// BenchmarkConfirmedAction measures one NewAction confirmed by two proxies.
// Codis 2 polls the response directory every 500 ms, so each confirmed
// action costs at least that (about 530 ms measured with a real Codis 2
// dashboard and proxy on ZooKeeper); a children watch removes that floor.
func BenchmarkConfirmedAction(b *testing.B) {
	for _, be := range backends.All() {
		b.Run(be.Name, func(b *testing.B) {
			ns := backends.Namespace(b)
			open := func() coord.Store { return be.Open(b, ns) }
			s := open()
			ctx := context.Background()
			if err := models.InitSlotSet(ctx, s, product, 1024); err != nil {
				b.Fatal(err)
			}
			g := models.NewServerGroup(product, 1)
			if err := g.Create(ctx, s); err != nil {
				b.Fatal(err)
			}
			if err := g.AddServer(ctx, s, models.NewServer(models.SERVER_TYPE_MASTER, "127.0.0.1:6379"), ""); err != nil {
				b.Fatal(err)
			}
			if err := models.SetSlotRange(ctx, s, product, 0, 1023, 1, models.SLOT_STATUS_ONLINE); err != nil {
				b.Fatal(err)
			}
			for i, id := range []string{"proxy_1", "proxy_2"} {
				info := models.ProxyInfo{Id: id, Addr: "127.0.0.1:1900" + string(rune('0'+i)), Pid: 1, StartAt: "x"}
				p, err := proxysim.Start(ctx, open(), product, info, proxysim.Options{})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(p.Stop)
				if err := models.SetProxyStatus(ctx, s, product, id, models.PROXY_STATE_ONLINE); err != nil {
					b.Fatal(err)
				}
				<-p.Ready()
			}
			slot := models.NewSlot(product, 1)
			// Warm up: the proxies load the slots when they go online.
			if err := models.NewAction(ctx, s, product, models.ACTION_TYPE_SLOT_CHANGED, slot, "", true); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := models.NewAction(ctx, s, product, models.ACTION_TYPE_SLOT_CHANGED, slot, "", true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSetSlotRange1024 measures assigning all 1024 slots (validated,
// written in as few transactions as the store allows, announced once).
func BenchmarkSetSlotRange1024(b *testing.B) {
	for _, be := range backends.All() {
		b.Run(be.Name, func(b *testing.B) {
			s := be.Open(b, backends.Namespace(b))
			ctx := context.Background()
			g := models.NewServerGroup(product, 1)
			if err := g.Create(ctx, s); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				if err := models.InitSlotSet(ctx, s, product, 1024); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := models.SetSlotRange(ctx, s, product, 0, 1023, 1, models.SLOT_STATUS_ONLINE); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkActionGC measures ActionGC deleting 1,000 and 10,000 old
// actions, each with a response directory holding two answers (the 500
// newest stay). peak-heap-MiB is the most the heap grew above its size
// before the call, sampled every millisecond (with the embedded etcd, its
// server's share too).
func BenchmarkActionGC(b *testing.B) {
	for _, old := range []int{1000, 10000} {
		for _, be := range backends.All() {
			b.Run(fmt.Sprintf("%d/%s", old, be.Name), func(b *testing.B) {
				benchmarkActionGC(b, be, old)
			})
		}
	}
}

func benchmarkActionGC(b *testing.B, be backends.Backend, old int) {
	s := be.Open(b, backends.Namespace(b))
	ctx := context.Background()
	acts, resp := models.GetWatchActionPath(product), models.GetActionResponsePath(product)
	if err := coord.MkdirAll(ctx, s, acts); err != nil {
		b.Fatal(err)
	}
	if err := coord.MkdirAll(ctx, s, resp); err != nil {
		b.Fatal(err)
	}
	next := 0
	var peak uint64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		var ops []coord.Op
		add := old // and, the first time, the 500 that stay
		if i == 0 {
			add += models.ActionGCFloor
		}
		for n := 0; n < add; n++ {
			name := fmt.Sprintf("%010d", next)
			next++
			ops = append(ops, coord.CreateOp(acts+"/"+name, []byte(`{"type":"slot_changed","ts":"0"}`), coord.Persistent),
				coord.CreateOp(resp+"/"+name, nil, coord.Persistent),
				coord.CreateOp(resp+"/"+name+"/proxy_1", nil, coord.Persistent), coord.CreateOp(resp+"/"+name+"/proxy_2", nil, coord.Persistent))
		}
		batches, err := coord.Batches(ops, s.Limits())
		if err != nil {
			b.Fatal(err)
		}
		for _, t := range batches {
			if _, err := s.Txn(ctx, t...); err != nil {
				b.Fatal(err)
			}
		}
		ops, batches = nil, nil
		runtime.GC()
		stop := sampleHeap(&peak)
		b.StartTimer()
		if err := models.ActionGC(ctx, s, product, models.GC_TYPE_N, 0); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		stop()
		b.StartTimer()
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}

// sampleHeap records in *peak the most the heap grows above its size now,
// until the returned function is called.
func sampleHeap(peak *uint64) (stop func()) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 { metrics.Read(sample); return sample[0].Value.Uint64() }
	base := read()
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			if v := read(); v > base && v-base > *peak {
				*peak = v - base
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); <-finished }
}
