package api

import (
	"net/url"
	"testing"
	"time"
)

// ruleList is a fixed RuleSource.
type ruleList []RuleGroup

func (l ruleList) RuleGroups() []RuleGroup { return l }

// TestRulesAlertsMetadata checks /api/v1/rules, /api/v1/alerts and
// /api/v1/metadata byte for byte in Prometheus's shapes, with its
// filters; internal/server checks them against a real Prometheus.
func TestRulesAlertsMetadata(t *testing.T) {
	evalAt := base.Add(-30 * time.Second)
	rules := ruleList{
		{Name: "meshlens-slo-a", File: "slos.yaml", Interval: 30 * time.Second, EvaluationTime: 2 * time.Millisecond, LastEvaluation: evalAt, Rules: []Rule{
			{Type: RuleRecording, Name: "slo:objective:ratio", Query: "vector(0.999)", Labels: map[string]string{"slo": "a"}, EvaluationTime: time.Millisecond, LastEvaluation: evalAt},
			{Type: RuleAlerting, Name: "Burn", Query: "up == 0", Duration: 2 * time.Minute, Labels: map[string]string{"slo": "a", "tier": "fast"},
				Annotations: map[string]string{"summary": "burning"}, LastEvaluation: evalAt,
				Alerts: []ActiveAlert{{Labels: map[string]string{"alertname": "Burn", "slo": "a", "tier": "fast"}, State: "firing", ActiveAt: base.Add(-time.Hour), Value: 14.5}}},
			{Type: RuleAlerting, Name: "Slow", Query: "up == 2", Labels: map[string]string{"slo": "a", "tier": "slow"}, LastError: "query failed", LastEvaluation: evalAt},
		}},
		{Name: "meshlens-localizer", File: "meshlens (localizer)", Rules: []Rule{
			{Type: RuleAlerting, Name: "Fault", Query: "x > 0",
				Alerts: []ActiveAlert{{Labels: map[string]string{"alertname": "Fault", "element": "dc1-spine1"}, State: "pending", ActiveAt: base, Value: 0.02}}},
		}},
	}
	s := newTestServer(t, Config{AllowAnonymous: RoleViewer}, Sources{Store: newTestStore(t), Rules: rules,
		Metadata: map[string]MetricMetadata{"meshlens_rackpair_loss_ratio": {Type: "gauge", Help: "Loss.", Unit: "ratio"}}})
	ok := func(data string) string { return `{"status":"success","data":` + data + `}` }
	const (
		recording = `{"name":"slo:objective:ratio","query":"vector(0.999)","labels":{"slo":"a"},"health":"ok","evaluationTime":0.001,"lastEvaluation":"2026-11-24T03:59:30Z","type":"recording"}`
		burnHead  = `{"state":"firing","name":"Burn","query":"up == 0","duration":120,"keepFiringFor":0,"labels":{"slo":"a","tier":"fast"},"annotations":{"summary":"burning"},"alerts":`
		burnAlert = `{"labels":{"alertname":"Burn","slo":"a","tier":"fast"},"annotations":{},"state":"firing","activeAt":"2026-11-24T03:00:00Z","value":"1.45e+01"}`
		burnTail  = `,"health":"ok","evaluationTime":0,"lastEvaluation":"2026-11-24T03:59:30Z","type":"alerting"}`
		slow      = `{"state":"inactive","name":"Slow","query":"up == 2","duration":0,"keepFiringFor":0,"labels":{"slo":"a","tier":"slow"},"annotations":{},"alerts":[],"health":"err","lastError":"query failed","evaluationTime":0,"lastEvaluation":"2026-11-24T03:59:30Z","type":"alerting"}`
		sloHead   = `{"name":"meshlens-slo-a","file":"slos.yaml","rules":[`
		sloTail   = `],"interval":30,"limit":0,"evaluationTime":0.002,"lastEvaluation":"2026-11-24T03:59:30Z"}`
		faultAlrt = `{"labels":{"alertname":"Fault","element":"dc1-spine1"},"annotations":{},"state":"pending","activeAt":"2026-11-24T04:00:00Z","value":"2e-02"}`
		localizer = `{"name":"meshlens-localizer","file":"meshlens (localizer)","rules":[{"state":"pending","name":"Fault","query":"x \u003e 0","duration":0,"keepFiringFor":0,"labels":{},"annotations":{},"alerts":[` + faultAlrt + `],"health":"unknown","evaluationTime":0,"lastEvaluation":"0001-01-01T00:00:00Z","type":"alerting"}],"interval":0,"limit":0,"evaluationTime":0,"lastEvaluation":"0001-01-01T00:00:00Z"}`
	)
	tests := []struct {
		name     string
		call     call
		wantCode int
		want     string
	}{
		{"all rules", call{path: "/api/v1/rules"}, 200,
			ok(`{"groups":[` + sloHead + recording + `,` + burnHead + `[` + burnAlert + `]` + burnTail + `,` + slow + sloTail + `,` + localizer + `]}`)},
		{"recording only", call{path: "/api/v1/rules", form: url.Values{"type": {"record"}}}, 200,
			ok(`{"groups":[` + sloHead + recording + sloTail + `]}`)},
		{"alerting without alerts", call{path: "/api/v1/rules", form: url.Values{"type": {"alert"}, "exclude_alerts": {"true"}, "rule_name[]": {"Burn"}}}, 200,
			ok(`{"groups":[` + sloHead + burnHead + `null` + burnTail + sloTail + `]}`)},
		{"by group and file", call{path: "/api/v1/rules", form: url.Values{"rule_group[]": {"meshlens-localizer"}, "file[]": {"meshlens (localizer)"}}}, 200,
			ok(`{"groups":[` + localizer + `]}`)},
		{"by rule labels", call{path: "/api/v1/rules", form: url.Values{"match[]": {`{tier="slow"}`}}}, 200,
			ok(`{"groups":[` + sloHead + slow + sloTail + `]}`)},
		{"by POST", call{method: "POST", path: "/api/v1/rules", form: url.Values{"match[]": {`{tier="slow"}`}}}, 200,
			ok(`{"groups":[` + sloHead + slow + sloTail + `]}`)},
		{"first page", call{path: "/api/v1/rules", form: url.Values{"group_limit": {"1"}, "type": {"record"}}}, 200,
			ok(`{"groups":[` + sloHead + recording + sloTail + `]}`)},
		{"next page", call{path: "/api/v1/rules", form: url.Values{"group_limit": {"1"}, "group_next_token": {groupToken("meshlens (localizer)", "meshlens-localizer")}}}, 200,
			ok(`{"groups":[` + localizer + `]}`)},
		{"a page and a token", call{path: "/api/v1/rules", form: url.Values{"group_limit": {"1"}}}, 200,
			ok(`{"groups":[` + sloHead + recording + `,` + burnHead + `[` + burnAlert + `]` + burnTail + `,` + slow + sloTail + `],"groupNextToken":"` + groupToken("meshlens (localizer)", "meshlens-localizer") + `"}`)},
		{"nothing matches", call{path: "/api/v1/rules", form: url.Values{"rule_name[]": {"nope"}}}, 200, ok(`{"groups":[]}`)},
		{"bad type", call{path: "/api/v1/rules", form: url.Values{"type": {"alerts"}}}, 400,
			`{"status":"error","errorType":"bad_data","error":"invalid parameter \"type\": not supported value \"alerts\""}`},
		{"bad exclude_alerts", call{path: "/api/v1/rules", form: url.Values{"exclude_alerts": {"maybe"}}}, 400, ""},
		{"bad match", call{path: "/api/v1/rules", form: url.Values{"match[]": {`{tier=}`}}}, 400, ""},
		{"empty matcher", call{path: "/api/v1/rules", form: url.Values{"match[]": {`{tier=""}`}}}, 400,
			`{"status":"error","errorType":"bad_data","error":"match[] must contain at least one non-empty matcher"}`},
		{"token without limit", call{path: "/api/v1/rules", form: url.Values{"group_next_token": {"x"}}}, 400, ""},
		{"bad limit", call{path: "/api/v1/rules", form: url.Values{"group_limit": {"0"}}}, 400, ""},
		{"unknown token", call{path: "/api/v1/rules", form: url.Values{"group_limit": {"1"}, "group_next_token": {"x"}}}, 400, ""},
		{"alerts", call{path: "/api/v1/alerts"}, 200, ok(`{"alerts":[` + burnAlert + `,` + faultAlrt + `]}`)},
		{"metadata", call{path: "/api/v1/metadata"}, 200,
			ok(`{"meshlens_odd":[{"type":"unknown","help":"","unit":""}],"meshlens_rackpair_loss_ratio":[{"type":"gauge","help":"Loss.","unit":"ratio"}]}`)},
		{"metadata of one metric", call{path: "/api/v1/metadata", form: url.Values{"metric": {"meshlens_rackpair_loss_ratio"}}}, 200,
			ok(`{"meshlens_rackpair_loss_ratio":[{"type":"gauge","help":"Loss.","unit":"ratio"}]}`)},
		{"metadata limit", call{path: "/api/v1/metadata", form: url.Values{"limit": {"1"}}}, 200, ok(`{"meshlens_odd":[{"type":"unknown","help":"","unit":""}]}`)},
		{"metadata of a metric not held", call{path: "/api/v1/metadata", form: url.Values{"metric": {"nope"}}}, 200, ok(`{}`)},
		{"metadata bad limit", call{path: "/api/v1/metadata", form: url.Values{"limit": {"x"}}}, 400,
			`{"status":"error","errorType":"bad_data","error":"limit must be a number"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := tc.call.do(t, s.url)
			if code != tc.wantCode {
				t.Fatalf("status %d, want %d: %s", code, tc.wantCode, body)
			}
			if tc.want != "" && body != tc.want {
				t.Errorf("body\n got %s\nwant %s", body, tc.want)
			}
		})
	}
}

// TestNoRules: a server without rules answers empty lists, not errors.
func TestNoRules(t *testing.T) {
	s := newTestServer(t, Config{AllowAnonymous: RoleViewer}, Sources{})
	for path, want := range map[string]string{
		"/api/v1/rules":  `{"status":"success","data":{"groups":[]}}`,
		"/api/v1/alerts": `{"status":"success","data":{"alerts":[]}}`,
	} {
		if _, body, _ := (call{path: path}).do(t, s.url); body != want {
			t.Errorf("%s: %s, want %s", path, body, want)
		}
	}
}

// TestFamilyOf: a histogram's and a summary's series map to their family.
func TestFamilyOf(t *testing.T) {
	s := &Server{src: Sources{Metadata: map[string]MetricMetadata{
		"h_seconds": {Type: "histogram"}, "s_seconds": {Type: "summary"}, "c_total": {Type: "counter"}, "g": {Type: "gauge"},
	}}}
	for _, tc := range []struct{ name, family, typ string }{
		{"h_seconds_bucket", "h_seconds", "histogram"},
		{"h_seconds_count", "h_seconds", "histogram"},
		{"s_seconds_sum", "s_seconds", "summary"},
		{"s_seconds_bucket", "s_seconds_bucket", "unknown"},
		{"c_total", "c_total", "counter"},
		{"g_count", "g_count", "unknown"},
		{"other", "other", "unknown"},
	} {
		family, md := s.familyOf(tc.name)
		if family != tc.family || md.Type != tc.typ {
			t.Errorf("familyOf(%s) = %s, %s; want %s, %s", tc.name, family, md.Type, tc.family, tc.typ)
		}
	}
}
