package aggregate_test

import (
	"slices"
	"testing"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/slo"
)

// TestLatencyBucketsMatchSLO: the aggregator writes the RTT histograms the
// SLO engine reads; its copy of the bucket bounds must be the engine's. (An
// external test package may import slo: slo never imports aggregate.)
func TestLatencyBucketsMatchSLO(t *testing.T) {
	if !slices.Equal(aggregate.LatencyBuckets, slo.LatencyBuckets) {
		t.Errorf("aggregate.LatencyBuckets = %v, slo.LatencyBuckets = %v: change both together", aggregate.LatencyBuckets, slo.LatencyBuckets)
	}
}

// TestHourlyStepMatchesSLO: the SLO engine's long windows read the hourly
// copies at the step the aggregator writes them.
func TestHourlyStepMatchesSLO(t *testing.T) {
	if aggregate.HourlyStep != slo.HourlyStep {
		t.Errorf("aggregate.HourlyStep = %v, slo.HourlyStep = %v: change both together", aggregate.HourlyStep, slo.HourlyStep)
	}
}
