package probe

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// register registers c on r and returns the collector to use: the one
// already registered under the same name when several responders or
// probers share a registry (tests, the benchmark), else c. A nil r leaves c
// unregistered but usable.
func register[C prometheus.Collector](r prometheus.Registerer, c C) C {
	if r == nil {
		return c
	}
	if err := r.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		// A different collector under our name is a programming error that
		// must not stop probing; the metric then goes unexported.
		return c
	}
	return c
}
