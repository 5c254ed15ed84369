package tcpproxy

import "github.com/prometheus/client_golang/prometheus"

// refusal is why a client connection was closed unanswered.
type refusal int

const (
	noTarget refusal = iota // no target accepted within hold_max
	overCap                 // over the connection cap
	numRefusals
)

func (r refusal) String() string {
	switch r {
	case noTarget:
		return "no_target"
	case overCap:
		return "over_cap"
	}
	return "unknown"
}

// metrics are the proxy's Prometheus metrics; open connections are read
// when scraped (openCollector), so keeping them costs the hot path nothing.
type metrics struct {
	conns        *prometheus.CounterVec
	bytes        *prometheus.CounterVec
	dialFailures *prometheus.CounterVec
	refused      *prometheus.CounterVec
	cut          *prometheus.CounterVec
}

func newMetrics(p *Proxy, reg prometheus.Registerer) *metrics {
	m := &metrics{
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "handoff_tcp_connections_total",
			Help: "Client connections of tcp apps connected to a target, by app and target.",
		}, []string{"app", "target"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "handoff_tcp_bytes_total",
			Help: "Bytes passed by tcp apps, by app, target and direction (to_target, to_client); counted in steps of at most 256 KiB per connection.",
		}, []string{"app", "target", "direction"}),
		dialFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "handoff_tcp_dial_failures_total",
			Help: "Attempts to connect to a tcp app's target that it refused or reset at once (the client's connection went to another target, or waited for one up to hold_max, trying again), by app and target.",
		}, []string{"app", "target"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "handoff_tcp_refused_total",
			Help: "Client connections of tcp apps closed unanswered, by app and reason: no_target (none accepted within hold_max), over_cap.",
		}, []string{"app", "reason"}),
		cut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "handoff_tcp_cut_total",
			Help: "Connections of tcp apps still open at drain_timeout (a deploy's drain, a stop, an upgrade's end), which were closed, by app.",
		}, []string{"app"}),
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	reg.MustRegister(m.conns, m.bytes, m.dialFailures, m.refused, m.cut, &openCollector{p: p})
	return m
}

var (
	openDesc    = prometheus.NewDesc("handoff_tcp_connections_open", "Connections of tcp apps open now, by app, release and target (empty release: draining).", []string{"app", "release", "target"}, nil)
	healthyDesc = prometheus.NewDesc("handoff_tcp_target_healthy", "1 when the tcp app's target passes its health check.", []string{"app", "release", "target"}, nil)
)

type openCollector struct{ p *Proxy }

func (c *openCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- openDesc
	ch <- healthyDesc
}

func (c *openCollector) Collect(ch chan<- prometheus.Metric) {
	for _, as := range c.p.Status() {
		emit := func(release string, t targetGauge) {
			ch <- prometheus.MustNewConstMetric(openDesc, prometheus.GaugeValue, float64(t.open), as.App, release, t.addr)
			healthy := 0.0
			if t.healthy {
				healthy = 1
			}
			ch <- prometheus.MustNewConstMetric(healthyDesc, prometheus.GaugeValue, healthy, as.App, release, t.addr)
		}
		for _, p := range as.Pools {
			for _, t := range p.Targets {
				emit(p.Release, targetGauge{t.Addr, t.Inflight, t.Healthy})
			}
		}
		for _, t := range as.Draining {
			emit("", targetGauge{t.Addr, t.Inflight, t.Healthy})
		}
	}
}

type targetGauge struct {
	addr    string
	open    int64
	healthy bool
}
