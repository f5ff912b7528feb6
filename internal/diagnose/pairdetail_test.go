package diagnose

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/api"
)

// detailFixture is what a server's memory budget did to a fabric's pair
// detail: complete from CompleteFrom; before it, only windows where the
// pair lost trimmedLoss of its probes were kept (Mode "off": none at all).
type detailFixture struct {
	api.PairDetail
	trimmedLoss float64
}

// trimmedAt is the detail of a server whose budget trimmed the pair's
// windows before from, keeping those that lost trimmedLoss.
func trimmedAt(from time.Time, trimmedLoss float64) *detailFixture {
	note := "detail for this pair trimmed by the memory budget (256 MiB) before " + from.Format(time.RFC3339) +
		"; kept before then: windows with loss, pairs looked at within 1h0m0s and a 1-in-64 sample of the other pairs"
	return &detailFixture{api.PairDetail{Mode: "budget", CompleteFrom: &from, SampleOneIn: 64, BudgetBytes: 256 << 20, Note: note}, trimmedLoss}
}

// detailSource serves a fabric's windows as a server with that pair
// detail would, and says so beside them (TestDiagnosePair).
type detailSource struct {
	pairSource
	d detailFixture
}

func (s detailSource) PairWindows(ctx context.Context, q api.PairQuery) ([]api.PairWindow, error) {
	if s.d.Mode == "off" {
		return nil, nil
	}
	ws, err := s.pairSource.PairWindows(ctx, q)
	for i := range ws {
		if from := s.d.CompleteFrom; from != nil && ws[i].Start.Before(*from) {
			ws[i].Lost, ws[i].LossRatio = uint64(s.d.trimmedLoss*float64(ws[i].Sent)), s.d.trimmedLoss
		}
	}
	return ws, err
}

func (s detailSource) PairDetail(context.Context, api.PairQuery) api.PairDetail {
	return s.d.PairDetail
}

// checkDetailShown: the report carries the server's pair detail and its
// text says it under the verdict.
func checkDetailShown(t *testing.T, r *PairReport, note string) {
	t.Helper()
	if r.Detail == nil || r.Detail.Note != note {
		t.Errorf("report's pair detail %+v, want the server's", r.Detail)
	}
	var b bytes.Buffer
	if err := WritePair(&b, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "\n\npair detail: "+note+"\n") {
		t.Errorf("the report does not say what the pair detail holds:\n%s", b.String())
	}
}
