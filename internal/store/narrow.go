package store

import (
	"context"
	"errors"
	"sync"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
)

// narrowQuerier opens the TSDB over each Select's own time range rather
// than over the whole query's. The PromQL engine opens one querier from
// the earliest sample any selector of a query needs to the latest, and
// the TSDB then looks every selector up in the index of every block in
// that span, even a selector of the last five minutes. An SLO's 30-day
// window, counted as C(t) - C(t-30d), has selectors at both ends and one
// across: with one querier, each of them paid for the 15 blocks between
// (docs/benchmarks.md "SLO engine"). Series read through a Select stay
// valid until Close, which closes every querier opened.
//
// What it gives up: the selectors of one query no longer read one
// snapshot of the head, so a commit landing between two of them is seen
// by the second only. The aggregator commits a window's counters at once
// and queries read samples at or before their evaluation time, so this
// is the same as a commit between two queries, which the SLO engine (bad
// and total events are two queries) already meets.
type narrowQuerier struct {
	db         storage.Queryable
	mint, maxt int64

	mu     sync.Mutex
	opened []storage.Querier
	whole  storage.Querier // for label queries, opened on first use
}

func newNarrowQuerier(db storage.Queryable, mint, maxt int64) *narrowQuerier {
	return &narrowQuerier{db: db, mint: mint, maxt: maxt}
}

func (n *narrowQuerier) open(mint, maxt int64) (storage.Querier, error) {
	q, err := n.db.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.opened = append(n.opened, q)
	return q, nil
}

func (n *narrowQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	mint, maxt := n.mint, n.maxt
	if hints != nil {
		mint, maxt = max(mint, hints.Start), min(maxt, hints.End)
	}
	if mint > maxt {
		return storage.EmptySeriesSet()
	}
	q, err := n.open(mint, maxt)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	return q.Select(ctx, sortSeries, hints, ms...)
}

func (n *narrowQuerier) wholeQuerier() (storage.Querier, error) {
	n.mu.Lock()
	w := n.whole
	n.mu.Unlock()
	if w != nil {
		return w, nil
	}
	q, err := n.open(n.mint, n.maxt)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.whole == nil {
		n.whole = q
	}
	return n.whole, nil
}

func (n *narrowQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	q, err := n.wholeQuerier()
	if err != nil {
		return nil, nil, err
	}
	return q.LabelValues(ctx, name, hints, ms...)
}

func (n *narrowQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	q, err := n.wholeQuerier()
	if err != nil {
		return nil, nil, err
	}
	return q.LabelNames(ctx, hints, ms...)
}

func (n *narrowQuerier) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var errs []error
	for _, q := range n.opened {
		errs = append(errs, q.Close())
	}
	n.opened, n.whole = nil, nil
	return errors.Join(errs...)
}
