package dashboard

import (
	"fmt"
	"strings"

	"github.com/handoff-dev/handoff/internal/tcpproxy"
)

// tcpView is a tcp app's listeners and counts on the page.
type tcpView struct {
	Listen        string
	Open          int64
	Refused, Cut  int64
	targetsByAddr map[string]tcpproxy.TargetStats
}

func newTCPView(st *tcpproxy.Stats) *tcpView {
	if st == nil {
		return nil
	}
	v := &tcpView{Listen: strings.Join(st.Listen, ", "), Open: st.Open, Refused: st.Refused, Cut: st.Cut,
		targetsByAddr: map[string]tcpproxy.TargetStats{}}
	for _, t := range st.Targets {
		v.targetsByAddr[t.Addr] = t
	}
	return v
}

// tcpTargetView is one tcp target's counts beside its instance.
type tcpTargetView struct {
	Connections  int64
	Bytes        string // to the target / to the client
	DialFailures int64
}

// withTCP adds a tcp app's counts to the instances that are its targets.
func withTCP(instances []instanceView, v *tcpView) {
	if v == nil {
		return
	}
	for i := range instances {
		if t, ok := v.targetsByAddr[instances[i].Addr]; ok {
			instances[i].TCP = &tcpTargetView{Connections: t.Connections, DialFailures: t.DialFailures,
				Bytes: byteSize(t.BytesToTarget) + " in, " + byteSize(t.BytesToClient) + " out"}
		}
	}
}

// byteSize writes a byte count for people: 512 B, 1.5 MiB.
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
