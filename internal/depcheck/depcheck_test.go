// Package depcheck holds a test of what the library's packages link.
package depcheck

import (
	"os/exec"
	"strings"
	"testing"
)

// Importing a client backend, the models or storeurl never links a server:
// etcd's server lives in etcdembed only, and no package but the tools links
// Consul's agent.
func TestClientsLinkNoServer(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	clients := []string{
		"github.com/coordkit/coord/coord",
		"github.com/coordkit/coord/coord/etcdstore",
		"github.com/coordkit/coord/coord/zkstore",
		"github.com/coordkit/coord/coord/consulstore",
		"github.com/coordkit/coord/models",
		"github.com/coordkit/coord/models/proxysim",
		"github.com/coordkit/coord/storeurl",
	}
	servers := []string{"go.etcd.io/etcd/server/", "github.com/hashicorp/consul/agent"}
	for _, pkg := range clients {
		out, err := exec.Command(goBin, "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, s := range servers {
				if strings.HasPrefix(dep, s) {
					t.Errorf("%s links the server package %s", pkg, dep)
				}
			}
		}
	}
	// And the check itself bites: etcdembed does link etcd's server.
	out, err := exec.Command(goBin, "list", "-deps", "github.com/coordkit/coord/coord/etcdembed").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "go.etcd.io/etcd/server/v3/embed") {
		t.Error("etcdembed does not list etcd's server: the check above would prove nothing")
	}
}
