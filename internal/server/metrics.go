package server

import (
	"github.com/handoff-dev/handoff/internal/supervisor"
	"github.com/prometheus/client_golang/prometheus"
)

var (
	instancesDesc = prometheus.NewDesc("handoff_instances", "Supervised instances, by app, release and state (running, backoff, crashloop, draining, …).", []string{"app", "release", "state"}, nil)
	restartsDesc  = prometheus.NewDesc("handoff_instance_restarts", "Restarts of each supervised instance after it crashed.", []string{"app", "instance"}, nil)
)

// instanceCollector reports the supervisor's instances when scraped: a
// crash loop shows as handoff_instances{state="crashloop"} > 0.
type instanceCollector struct{ sup func() *supervisor.Supervisor }

func (c *instanceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- instancesDesc
	ch <- restartsDesc
}

func (c *instanceCollector) Collect(ch chan<- prometheus.Metric) {
	type key struct{ app, release, state string }
	counts := map[key]int{}
	for _, inst := range c.sup().List("") {
		counts[key{inst.App, inst.Release, string(inst.State)}]++
		ch <- prometheus.MustNewConstMetric(restartsDesc, prometheus.GaugeValue, float64(inst.Restarts), inst.App, inst.ID)
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(instancesDesc, prometheus.GaugeValue, float64(n), k.app, k.release, k.state)
	}
}
