package aggregate

import "time"

// quotaSlots divide the quota's span: an agent's usage is what arrived in
// the last quotaSlots slots, so it falls back one slot at a time as the
// stream's own MaxAge ages its batches out.
const quotaSlots = 24

// quotas keep, per agent, the bytes of the batches it put in the stream
// over a span (the stream's MaxAge): what JetStream cannot bound per
// agent, since it limits messages per subject, not bytes.
type quotas struct {
	limit  int64
	slot   time.Duration
	agents map[string]*usage // by host of the topology; "" for any other name
}

type usage struct {
	slots [quotaSlots]struct {
		n     int64 // slot number (time / slot)
		bytes int64
	}
}

func newQuotas(limit int64, span time.Duration) *quotas {
	if limit <= 0 {
		return nil
	}
	if span <= 0 {
		span = 24 * time.Hour
	}
	return &quotas{limit: limit, slot: max(span/quotaSlots, time.Second), agents: map[string]*usage{}}
}

// admit adds a batch of size bytes that agent's subject carried, stored
// at t, and says whether the agent is still within its quota. A batch
// that would take it over is refused and not added (the ingester deletes
// it from the stream); what was accepted counts for the whole span, as it
// stays in the stream that long. Names that are
// not hosts of the topology (known false) share one quota: without NATS
// permissions anyone may publish on any subject, and the map must not
// grow with them.
func (q *quotas) admit(agent string, known bool, size int, t time.Time) bool {
	if q == nil {
		return true
	}
	if !known {
		agent = ""
	}
	u := q.agents[agent]
	if u == nil {
		u = &usage{}
		q.agents[agent] = u
	}
	now := t.UnixNano() / int64(q.slot)
	var sum int64
	for _, s := range u.slots {
		if s.n > now-quotaSlots {
			sum += s.bytes
		}
	}
	if sum+int64(size) > q.limit {
		return false
	}
	s := &u.slots[now%quotaSlots]
	if s.n != now {
		s.n, s.bytes = now, 0
	}
	s.bytes += int64(size)
	return true
}
