package api

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// TestAbuseLeavesOthersAnswered sends a mix of hostile requests — invalid
// PromQL, absurd ranges, huge label sets, oversized and malformed bodies —
// concurrently with a well-behaved user's queries. Every bad request gets a
// 4xx with a message; every good query keeps answering 200.
func TestAbuseLeavesOthersAnswered(t *testing.T) {
	s := newTestServer(t, Config{AllowAnonymous: RoleViewer}, Sources{Store: newTestStore(t)})
	hugeMatchers := url.Values{}
	for i := range 2000 {
		hugeMatchers.Add("match[]", fmt.Sprintf(`{__name__="m%d",a=~".*x.*"}`, i))
	}
	bigLabelValue := `meshlens_rackpair_loss_ratio{src="` + strings.Repeat("x", 512<<10) + `"}`
	abuse := []struct {
		name string
		c    call
		want int
	}{
		{"invalid promql", call{path: "/api/v1/query", form: url.Values{"query": {"sum(("}}}, 400},
		{"huge range", call{path: "/api/v1/query_range", form: url.Values{"query": {"up"}, "start": {"0"}, "end": {"4102444800"}, "step": {"1"}}}, 400},
		{"negative step", call{path: "/api/v1/query_range", form: url.Values{"query": {"up"}, "start": {"0"}, "end": {"10"}, "step": {"-1"}}}, 400},
		{"garbage time", call{path: "/api/v1/query", form: url.Values{"query": {"up"}, "time": {"yesterday-ish"}}}, 400},
		{"huge label set", call{method: http.MethodPost, path: "/api/v1/series", form: hugeMatchers}, 400},
		{"huge label value", call{method: http.MethodPost, path: "/api/v1/query", form: url.Values{"query": {bigLabelValue}}}, 400},
		{"body over the limit", call{method: http.MethodPost, path: "/api/v1/query", form: url.Values{"query": {strings.Repeat("y", 2<<20)}}}, 413},
		{"malformed form body", call{method: http.MethodPost, path: "/api/v1/query", form: url.Values{"query": {"%%%"}}}, 400},
		{"bad host name", call{path: "/api/v1/pairs", form: url.Values{"src": {"../../etc"}, "dst": {"b"}}}, 400},
		// Took the server to 7.3 GB before subqueries were bounded.
		{"subquery bomb", call{path: "/api/v1/query", form: url.Values{"query": {"count_over_time(vector(1)[10y:1s])"}}}, 400},
	}
	good := call{path: "/api/v1/query", form: url.Values{"query": {"sum(meshlens_rackpair_loss_ratio)"}, "time": {fmt.Sprint(base.Unix())}}}

	var wg sync.WaitGroup
	errs := make(chan string, 1000)
	for round := range 5 {
		for _, a := range abuse {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, body, _ := a.c.do(t, s.url)
				if code != a.want || !strings.Contains(body, `"error"`) && code != http.StatusRequestEntityTooLarge {
					errs <- fmt.Sprintf("round %d %s: %d %.200s, want %d with an error message", round, a.name, code, body, a.want)
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, body, _ := good.do(t, s.url); code != http.StatusOK || !strings.Contains(body, `"success"`) {
				errs <- fmt.Sprintf("round %d: a good query failed under abuse: %d %.200s", round, code, body)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	// Still up afterwards.
	if code, _, _ := good.do(t, s.url); code != http.StatusOK {
		t.Fatalf("server not answering after the abuse: %d", code)
	}
}
