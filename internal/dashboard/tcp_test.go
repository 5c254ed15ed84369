package dashboard

import (
	"net/http"
	"strings"
	"testing"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/gateway"
	"github.com/handoff-dev/handoff/internal/tcpproxy"
)

// TestPageTCPApp: a tcp app shows its listeners, its open connections,
// each target's counts, and no mode switches (its traffic does not pass
// the gateway).
func TestPageTCPApp(t *testing.T) {
	api := newFakeAPI()
	api.setStatus(func(st *control.Status) {
		st.Apps = append(st.Apps, control.AppStatus{
			AppStatus: gateway.AppStatus{App: "codehost", Kind: "tcp", Mode: "normal",
				Pools:    []gateway.PoolStatus{{Release: "r2", Weight: 100, Targets: []gateway.TargetStatus{{Addr: "10.0.0.7:22", Release: "r2", Healthy: true, Inflight: 12}}}},
				Draining: []gateway.TargetStatus{{Addr: "10.0.0.6:22", Healthy: true, Inflight: 3, Draining: true}}},
			Current: "r2",
			TCP: &tcpproxy.Stats{Listen: []string{"0.0.0.0:2222"}, Open: 15, Cut: 1, Targets: []tcpproxy.TargetStats{
				{Addr: "10.0.0.6:22", Open: 3, Connections: 40, BytesToTarget: 2048, BytesToClient: 3 << 20},
				{Addr: "10.0.0.7:22", Open: 12, Connections: 12, BytesToTarget: 100, BytesToClient: 512, DialFailures: 2},
			}},
		})
	})
	s := newTestServer(t, api)
	resp, body := s.do(t, "GET", "/", "", s.login(t, "bob"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %s", resp.Status)
	}
	for _, want := range []string{
		`id="app-codehost-state"`, `listening on <code>0.0.0.0:2222</code> · <strong class="open">15</strong> connections open · 1 cut at drain_timeout`,
		`open</span> <span class="inflight">12</span>`, `connections</span> 12`, `bytes</span> 100 B in, 512 B out`, `dial failures</span> 2`,
		`bytes</span> 2.0 KiB in, 3.0 MiB out`, // the draining target
		"the gateway's modes do not apply to it",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(body, `id="sw-codehost-readonly"`) || !strings.Contains(body, `<h2>codehost <span class="kind">tcp</span></h2>`) {
		t.Error("a tcp app has a mode or mode switches")
	}
}
