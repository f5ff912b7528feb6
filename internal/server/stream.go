package server

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/internal/bus"
)

// streamUsage exports what the results stream holds, read from JetStream
// at each scrape: with a byte cap set, how close the bus is to refusing
// batches (agents then spool and retry).
type streamUsage struct {
	js         jetstream.JetStream
	maxBytes   int64
	agentQuota int64
}

var (
	streamBytesDesc = prometheus.NewDesc("meshlens_stream_bytes", "Bytes the results stream holds.", nil, nil)
	streamMsgsDesc  = prometheus.NewDesc("meshlens_stream_messages", "Batches the results stream holds.", nil, nil)
	streamMaxDesc   = prometheus.NewDesc("meshlens_stream_max_bytes", "The results stream's byte cap (--stream-max-bytes); 0: none.", nil, nil)
	streamUpDesc    = prometheus.NewDesc("meshlens_stream_info_up", "1 if the results stream's usage could be read at this scrape, else 0.", nil, nil)
	streamQuotaDesc = prometheus.NewDesc("meshlens_stream_agent_quota_bytes", "Each agent's byte quota in the results stream over --stream-max-age (--stream-agent-max-bytes, at most an eighth of --stream-max-bytes); 0: none.", nil, nil)
)

func (u *streamUsage) Describe(ch chan<- *prometheus.Desc) {
	ch <- streamBytesDesc
	ch <- streamMsgsDesc
	ch <- streamMaxDesc
	ch <- streamUpDesc
	ch <- streamQuotaDesc
}

func (u *streamUsage) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(streamMaxDesc, prometheus.GaugeValue, float64(u.maxBytes))
	ch <- prometheus.MustNewConstMetric(streamQuotaDesc, prometheus.GaugeValue, float64(u.agentQuota))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := u.js.Stream(ctx, bus.ResultsStream)
	var info *jetstream.StreamInfo
	if err == nil {
		info, err = st.Info(ctx)
	}
	if err != nil {
		ch <- prometheus.MustNewConstMetric(streamUpDesc, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(streamUpDesc, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(streamBytesDesc, prometheus.GaugeValue, float64(info.State.Bytes))
	ch <- prometheus.MustNewConstMetric(streamMsgsDesc, prometheus.GaugeValue, float64(info.State.Msgs))
}

// agentQuota is each agent's byte quota in the results stream: the
// configured one, at most an eighth of the stream's cap, so that an agent
// is refused and purged before it fills the stream for everybody.
func (s *Server) agentQuota() int64 {
	q := s.cfg.StreamAgentMaxBytes
	if m := s.cfg.Stream.MaxBytes; m > 0 && q > 0 {
		q = min(q, max(m/8, 1))
	}
	return max(q, 0)
}
