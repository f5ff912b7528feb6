package web

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, target string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec
}

func TestHandler(t *testing.T) {
	index, err := fs.ReadFile(Files(), "index.html")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, method, target string
		status               int
		contentType          string
		index                bool // the body is index.html
	}{
		{"root", "GET", "/", 200, "text/html; charset=utf-8", true},
		{"index by name", "GET", "/index.html", 200, "text/html; charset=utf-8", true},
		{"module", "GET", "/js/app.js", 200, "text/javascript; charset=utf-8", false},
		{"stylesheet", "GET", "/css/app.css", 200, "text/css; charset=utf-8", false},
		{"deep link", "GET", "/heatmap/dc1/whatever", 200, "text/html; charset=utf-8", true},
		{"directory", "GET", "/js/", 200, "text/html; charset=utf-8", true},
		{"missing module", "GET", "/js/nope.js", 200, "text/html; charset=utf-8", true},
		{"dot dot", "GET", "/../../etc/passwd", 200, "text/html; charset=utf-8", true},
		{"head", "HEAD", "/", 200, "text/html; charset=utf-8", false},
		{"api is never the page", "GET", "/api/v1/nothing", 404, "", false},
		{"api root", "GET", "/api", 404, "", false},
		{"post", "POST", "/", 405, "", false},
	}
	h := Handler()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := get(t, h, tc.method, tc.target)
			if rec.Code != tc.status {
				t.Fatalf("%s %s: status %d, want %d", tc.method, tc.target, rec.Code, tc.status)
			}
			if tc.contentType != "" && rec.Header().Get("Content-Type") != tc.contentType {
				t.Errorf("Content-Type %q, want %q", rec.Header().Get("Content-Type"), tc.contentType)
			}
			if got := rec.Body.String() == string(index); got != tc.index {
				t.Errorf("body is index.html: %v, want %v", got, tc.index)
			}
			if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
				t.Errorf("CSP %q lacks default-src 'self'", csp)
			}
		})
	}
}

// TestNoInlineCode keeps the UI working under CSP default-src 'self': no
// inline scripts, styles or event handlers in HTML, and no HTML strings or
// style attributes built in JavaScript (innerHTML would also open the door
// to names from the server being read as markup).
func TestNoInlineCode(t *testing.T) {
	rules := map[string][]*regexp.Regexp{
		".html": {regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`), regexp.MustCompile(`<style`), regexp.MustCompile(`\sstyle=`), regexp.MustCompile(`\son[a-z]+=`)},
		".js":   {regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write`), regexp.MustCompile(`setAttribute\(\s*'style'`), regexp.MustCompile(`\beval\(|new Function\(`)},
	}
	n := 0
	err := fs.WalkDir(Files(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(Files(), p)
		if err != nil {
			return err
		}
		for _, re := range rules[path.Ext(p)] {
			if loc := re.FindIndex(b); loc != nil {
				t.Errorf("%s: %q is not allowed under the CSP", p, b[loc[0]:loc[1]])
			}
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Fatalf("walked %d files, want the whole UI", n)
	}
}

// TestImportsResolve catches a module importing a file that is not
// embedded: the browser would fail the whole app on it.
func TestImportsResolve(t *testing.T) {
	imp := regexp.MustCompile(`(?m)^\s*(?:import|export)\s[^'"]*from\s+'([^']+)'`)
	err := fs.WalkDir(Files(), "js", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) != ".js" {
			return err
		}
		b, err := fs.ReadFile(Files(), p)
		if err != nil {
			return err
		}
		for _, m := range imp.FindAllSubmatch(b, -1) {
			target := path.Join(path.Dir(p), string(m[1]))
			if _, err := fs.Stat(Files(), target); err != nil {
				t.Errorf("%s imports %s: %v", p, m[1], err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// FuzzHandlerPath: no path crashes the handler, and nothing under /api/
// is ever answered with the page.
func FuzzHandlerPath(f *testing.F) {
	for _, s := range []string{"/", "/js/app.js", "/api/v1/query", "/%2e%2e/", "//api/x", "/api/../js/app.js", "/a\x00b"} {
		f.Add(s)
	}
	h := Handler()
	f.Fuzz(func(t *testing.T, p string) {
		req, err := http.NewRequest("GET", "http://x/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.URL.Path = "/" + strings.TrimPrefix(p, "/")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		clean := path.Clean(req.URL.Path)
		body, _ := io.ReadAll(rec.Body)
		if (clean == "/api" || strings.HasPrefix(clean, "/api/")) && rec.Code != http.StatusNotFound {
			t.Errorf("%q: status %d, want 404", p, rec.Code)
		}
		if rec.Code != 200 && rec.Code != 404 && rec.Code != 301 {
			t.Errorf("%q: status %d (%s)", p, rec.Code, body)
		}
	})
}
