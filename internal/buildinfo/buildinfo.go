// Package buildinfo exports meshlens_build_info, the one series that says
// which build of which component a scrape came from.
package buildinfo

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector is meshlens_build_info{component, version, goversion}, always 1,
// as Prometheus's own prometheus_build_info: join it in queries to label
// anything by version.
func Collector(component, version string) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "meshlens_build_info",
		Help:        "Always 1; the labels say which component and build exported it.",
		ConstLabels: prometheus.Labels{"component": component, "version": version, "goversion": runtime.Version()},
	})
	g.Set(1)
	return g
}
