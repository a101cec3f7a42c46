package models_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/backends"
	"github.com/coordkit/coord/models"
)

// GetActionWithSeq and GetServer read what the other functions wrote, and
// refuse what is not theirs.
func TestGetActionWithSeqAndServer(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		setupProduct(t, s)
		seqs, err := models.GetActionSeqList(ctx, s, product)
		must(t, err)
		act, err := models.GetActionWithSeq(ctx, s, product, int64(seqs[len(seqs)-1]), "zookeeper")
		must(t, err)
		if act.Type != models.ACTION_TYPE_MULTI_SLOT_CHANGED {
			t.Fatalf("the newest action is %s, want the range assignment", act.Type)
		}
		_, err = models.GetActionWithSeq(ctx, s, product, 99999, "")
		is(t, err, coord.ErrNoNode)
		path := models.GetGroupPath(product, 1) + "/127.0.0.1:6379"
		srv, err := models.GetServer(ctx, s, path)
		must(t, err)
		if srv.Type != models.SERVER_TYPE_MASTER || srv.GroupId != 1 || srv.Addr != "127.0.0.1:6379" {
			t.Fatalf("GetServer = %+v", srv)
		}
		_, err = models.GetServer(ctx, s, models.GetSlotPath(product, 1))
		is(t, err, models.ErrMalformed)
		_, err = models.GetServer(ctx, s, "not a path")
		is(t, err, coord.ErrInvalidPath)
	})
}

// Ops and DebugVars read a proxy's expvar page (here a stand-in on
// loopback) and give typed errors where Codis 2 panics.
func TestProxyDebugVars(t *testing.T) {
	pages := map[string]string{
		"/ops":      `{"router":{"ops":1234},"cmdline":["codis-proxy"]}`,
		"/none":     `{"cmdline":["codis-proxy"]}`,
		"/badops":   `{"router":{"ops":"many"}}`,
		"/badroute": `{"router":7}`,
		"/notjson":  `<html>`,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page, ok := pages[strings.TrimSuffix(r.URL.Path, "/debug/vars")]
		if !ok || !strings.HasSuffix(r.URL.Path, "/debug/vars") {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, page)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()
	pi := func(page string) *models.ProxyInfo {
		return &models.ProxyInfo{Id: "proxy_1", DebugVarAddr: host + page}
	}
	if n, err := pi("/ops").Ops(ctx); err != nil || n != 1234 {
		t.Fatalf("Ops = %d, %v", n, err)
	}
	if m, err := pi("/ops").DebugVars(ctx); err != nil || fmt.Sprint(m["cmdline"]) != "[codis-proxy]" {
		t.Fatalf("DebugVars = %v, %v", m, err)
	}
	if n, err := pi("/none").Ops(ctx); err != nil || n != 0 {
		t.Fatalf("Ops without router = %d, %v", n, err)
	}
	for _, page := range []string{"/badops", "/badroute", "/notjson"} {
		_, err := pi(page).Ops(ctx)
		is(t, err, models.ErrMalformed)
	}
	_, err := pi("/missing").DebugVars(ctx)
	is(t, err, coord.ErrUnavailable)
	// A closed loopback port: unreachable.
	dead := httptest.NewServer(http.NotFoundHandler())
	addr := strings.TrimPrefix(dead.URL, "http://")
	dead.Close()
	_, err = (&models.ProxyInfo{Id: "gone", DebugVarAddr: addr}).Ops(ctx)
	is(t, err, coord.ErrUnavailable)
}
