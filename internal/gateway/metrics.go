package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the gateway's Prometheus metrics. Counters are resolved to
// their label values when a snapshot is built, so the hot path only adds.
type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	retries  prometheus.Counter
	// descriptors counts checks and dials that failed for want of file
	// descriptors (EMFILE, ENFILE): the gateway's fault, not an instance's.
	descriptors *prometheus.CounterVec
}

func newMetrics(g *Gateway, reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "handoff_requests_total",
			Help: "Requests answered, by app, release and status class; release is empty when the gateway answered itself.",
		}, []string{"app", "release", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "handoff_request_duration_seconds",
			Help:    "Time from a request's arrival to the end of its response, by app.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"app"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "handoff_retries_total",
			Help: "Requests sent again to another instance after one failed before answering.",
		}),
		descriptors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "handoff_gateway_descriptors_exhausted_total",
			Help: "Health checks (op=health_check) and connections to instances (op=dial) that failed because the gateway was out of file descriptors (EMFILE, ENFILE); no target is marked down for them.",
		}, []string{"op"}),
	}
	for _, op := range []string{"health_check", "dial"} {
		m.descriptors.WithLabelValues(op) // both series from the start, at 0
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	reg.MustRegister(m.requests, m.latency, m.retries, m.descriptors, &stateCollector{g: g})
	return m
}

var (
	inflightDesc = prometheus.NewDesc("handoff_inflight_requests", "Requests and tunnels in flight, by app, release and target.", []string{"app", "release", "target"}, nil)
	healthyDesc  = prometheus.NewDesc("handoff_target_healthy", "1 when the target passes its health check.", []string{"app", "release", "target"}, nil)
	heldDesc     = prometheus.NewDesc("handoff_held_requests", "Requests held by a pause, by app.", []string{"app"}, nil)
	modeDesc     = prometheus.NewDesc("handoff_mode", "1 for the mode each app is in.", []string{"app", "mode"}, nil)
)

// stateCollector reads gauges from the current snapshot when scraped, so
// that keeping them costs the hot path nothing.
type stateCollector struct{ g *Gateway }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- inflightDesc
	ch <- healthyDesc
	ch <- heldDesc
	ch <- modeDesc
	ch <- releaseLatencyDesc
	ch <- releaseFailedDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.g.snap.Load()
	for name, a := range s.apps {
		for _, p := range a.pools {
			for _, t := range p.targets {
				ch <- prometheus.MustNewConstMetric(inflightDesc, prometheus.GaugeValue, float64(t.inflight.Load()), name, p.release, t.Addr)
				healthy := 0.0
				if t.healthy.Load() {
					healthy = 1
				}
				ch <- prometheus.MustNewConstMetric(healthyDesc, prometheus.GaugeValue, healthy, name, p.release, t.Addr)
			}
		}
		ch <- prometheus.MustNewConstMetric(heldDesc, prometheus.GaugeValue, float64(a.hold.held()), name)
		for _, m := range []string{"normal", "readonly", "maintenance", "paused"} {
			v := 0.0
			if a.mode.String() == m {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(modeDesc, prometheus.GaugeValue, v, name, m)
		}
		for _, c := range c.g.ReleaseStats(name) {
			ch <- releaseHistogram(name, c)
			ch <- prometheus.MustNewConstMetric(releaseFailedDesc, prometheus.CounterValue, float64(c.Failed), name, c.Release)
		}
	}
}

var (
	releaseLatencyDesc = prometheus.NewDesc("handoff_release_request_duration_seconds",
		"Time from a request's arrival to the end of its response, by app and the release that answered: releases side by side.", []string{"app", "release"}, nil)
	releaseFailedDesc = prometheus.NewDesc("handoff_release_failed_requests_total",
		"Requests a release's instances failed (the gateway answered 502 or 504), by app and release.", []string{"app", "release"}, nil)
)

// releaseHistogram renders a release's latency buckets as a histogram.
func releaseHistogram(app string, c ReleaseCounts) prometheus.Metric {
	buckets := make(map[float64]uint64, len(latencyBounds))
	var cum uint64
	for i, b := range latencyBounds {
		cum += uint64(c.Buckets[i])
		buckets[b.Seconds()] = cum
	}
	return prometheus.MustNewConstHistogram(releaseLatencyDesc, uint64(c.Requests()), c.Sum.Seconds(), buckets, app, c.Release)
}
