// Package ui benchmarks the web UI's heatmap in a real headless Chromium:
// the time web/js/heatmap.js takes to draw Pingmesh rack-pair matrices of
// 100², 1,000² and 2,500² cells, measured in the page with performance.now().
//
//	go test ./bench/ui/ -run '^$' -bench HeatmapRender -benchtime 10x
package ui

import (
	"embed"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"sort"
	"testing"
	"time"

	"github.com/meshlens/meshlens/test/e2e/ui"
	"github.com/meshlens/meshlens/web"
)

//go:embed testdata
var testdata embed.FS

func benchServer(b *testing.B) string {
	sub, err := fs.Sub(testdata, "testdata")
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/bench/", http.StripPrefix("/bench/", http.FileServerFS(sub)))
	mux.Handle("/", web.Handler())
	srv := httptest.NewServer(mux)
	b.Cleanup(srv.Close)
	return srv.URL
}

type timing struct{ Render, Frame float64 }

func BenchmarkHeatmapRender(b *testing.B) {
	base := benchServer(b)
	br := ui.NewBrowser(b, ui.Options{})
	if err := br.Navigate(base + "/bench/bench.html"); err != nil {
		b.Fatal(err)
	}
	if err := br.WaitFor(`typeof window.benchSetup === 'function'`, 30*time.Second); err != nil {
		b.Fatal(err)
	}
	for _, racks := range []int{100, 1000, 2500} {
		b.Run(fmt.Sprintf("racks=%d", racks), func(b *testing.B) {
			cells, err := ui.Eval[int](br, fmt.Sprintf("benchSetup(%d)", racks))
			if err != nil {
				b.Fatal(err)
			}
			if cells != racks*racks {
				b.Fatalf("benchSetup made %d cells, want %d", cells, racks*racks)
			}
			if _, err := ui.Eval[timing](br, "benchRender()"); err != nil { // warm-up: JIT, canvas allocation
				b.Fatal(err)
			}
			var renders, frames []float64
			b.ResetTimer()
			for b.Loop() {
				t, err := ui.Eval[timing](br, "benchRender()")
				if err != nil {
					b.Fatal(err)
				}
				renders, frames = append(renders, t.Render), append(frames, t.Frame)
			}
			b.ReportMetric(median(renders), "render-ms")
			b.ReportMetric(median(frames), "frame-ms")
			b.ReportMetric(float64(cells), "cells")
		})
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}
