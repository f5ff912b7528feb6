// Package ui drives meshlens's web UI in a real headless Chromium. Its
// tests (ui_test.go) start the real server fed by the simulator and assert
// on each page's DOM; the helpers here are shared with bench/ui.
//
// Chromium is required, never optional: without it the tests fail with a
// message saying how to install it (.ci/run does).
package ui

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// Chromium finds the browser: $MESHLENS_CHROMIUM, then the usual names on
// PATH (Debian's package installs /usr/bin/chromium).
func Chromium() (string, error) {
	if p := os.Getenv("MESHLENS_CHROMIUM"); p != "" {
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "/usr/bin/chromium"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("ui: no Chromium found (set MESHLENS_CHROMIUM or install Debian's chromium package, as .ci/run does)")
}

// Browser is one headless Chromium with one tab, closed when the test ends.
type Browser struct {
	ctx context.Context

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

// Options of NewBrowser.
type Options struct {
	Width, Height int  // viewport; 1280×800 when zero
	Dark          bool // emulate prefers-color-scheme: dark
}

// NewBrowser starts Chromium with a fresh profile. It fails the test (never
// skips) when Chromium is missing.
func NewBrowser(t testing.TB, o Options) *Browser {
	t.Helper()
	exe, err := Chromium()
	if err != nil {
		t.Fatal(err)
	}
	if o.Width == 0 {
		o.Width, o.Height = 1280, 800
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.WindowSize(o.Width, o.Height),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	b := &Browser{ctx: ctx}
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("ui: start %s: %v", exe, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancelTab(); <-done })
	if o.Dark {
		if err := b.SetDark(true); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// SetDark emulates prefers-color-scheme: dark (or light) from now on, for
// this page and the next ones.
func (b *Browser) SetDark(dark bool) error {
	scheme := "light"
	if dark {
		scheme = "dark"
	}
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
	}); err != nil {
		return fmt.Errorf("ui: emulate prefers-color-scheme %s: %w", scheme, err)
	}
	return nil
}

// SetViewport sets the page's viewport to width × height CSS pixels at
// one device pixel per CSS pixel; zero width restores the window's.
func (b *Browser) SetViewport(width, height int) error {
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	var err error
	if width == 0 {
		_, err = chromedp.Call(ctx, emulation.ClearDeviceMetricsOverride, cdp.Empty{})
	} else {
		_, err = chromedp.Call(ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{
			Width: int64(width), Height: int64(height), DeviceScaleFactor: 1,
		})
	}
	if err != nil {
		return fmt.Errorf("ui: viewport %d×%d: %w", width, height, err)
	}
	return nil
}

// Context is the tab's context, for chromedp actions.
func (b *Browser) Context() context.Context { return b.ctx }

// Navigate opens url and waits for the load event.
func (b *Browser) Navigate(url string) error {
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		return fmt.Errorf("ui: navigate to %s: %w", url, err)
	}
	return nil
}

// WaitFor polls a JavaScript predicate until it is truthy or timeout passes.
// A poll cut short by a navigation (the page's JavaScript context replaced)
// starts over in the new context.
func (b *Browser) WaitFor(predicate string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			left = time.Millisecond
		}
		ctx, cancel := context.WithTimeout(b.ctx, left+5*time.Second)
		_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](predicate,
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(left)))
		cancel()
		if err == nil {
			return nil
		}
		if contextLost(err) && time.Now().Before(deadline) {
			continue
		}
		return fmt.Errorf("ui: waiting for %s: %w", predicate, err)
	}
}

func contextLost(err error) bool {
	s := err.Error()
	return strings.Contains(s, "Cannot find context") || strings.Contains(s, "context was destroyed") || strings.Contains(s, "not survive navigation")
}

// Eval evaluates a JavaScript expression (promises are awaited) and decodes
// its value into T.
func Eval[T any](b *Browser, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		return v, fmt.Errorf("ui: evaluate %s: %w", expr, err)
	}
	return v, nil
}

// Do runs chromedp actions in the tab.
func (b *Browser) Do(actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

// Screenshot saves a PNG of the whole page to path.
func (b *Browser) Screenshot(path string) error {
	return b.screenshot(path, chromedp.FullScreenshot(100)) // quality 100: PNG
}

// ScreenshotViewport saves a PNG of what the viewport shows, for pages
// too long to photograph whole (256 agents).
func (b *Browser) ScreenshotViewport(path string) error {
	return b.screenshot(path, chromedp.CaptureScreenshot())
}

func (b *Browser) screenshot(path string, shot chromedp.Action[[]byte]) error {
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, shot)
	if err != nil {
		return fmt.Errorf("ui: screenshot %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("ui: screenshot %s: %w", path, err)
	}
	return os.WriteFile(path, png, 0o644)
}

// Problems are the console messages a healthy page never produces: uncaught
// exceptions and Content-Security-Policy violations. Failed resource loads
// are not among them: the UI probes endpoints that may not exist yet.
func (b *Browser) Problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, m := range b.console {
		text := m.String()
		if m.IsException() || strings.Contains(text, "Content Security Policy") || strings.Contains(text, "Content-Security-Policy") {
			out = append(out, text)
		}
	}
	return out
}
