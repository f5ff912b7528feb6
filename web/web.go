// Package web is meshlens's user interface: plain HTML, CSS and JavaScript
// modules (no build step, no CDN) embedded in the binary. The UI talks to
// the JSON and Prometheus-compatible APIs at the same origin with relative
// URLs, so this package imports nothing of meshlens: it only serves files.
package web

import (
	"bytes"
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed index.html css js
var files embed.FS

// securityHeaders are set on every file the UI serves. The CSP forbids
// inline scripts and styles: the UI builds its DOM from modules and sets
// styles through CSSOM only, so it keeps working under it.
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
	"X-Content-Type-Options":  "nosniff",
	"Referrer-Policy":         "no-referrer",
	"X-Frame-Options":         "DENY",
}

// Files is the UI's file tree (index.html at its root), for tests and for
// servers that want to mount it differently.
func Files() fs.FS { return files }

// Handler serves the UI. Unknown paths outside /api/ get index.html, so a
// deep link pasted into the address bar opens the app, which then reads
// its state from the URL. Paths under /api/ are never answered here: a
// missing API endpoint must be a 404 the UI can explain, not a page.
func Handler() http.Handler {
	fileServer := http.FileServerFS(files)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range securityHeaders {
			w.Header().Set(k, v)
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "web: method not allowed", http.StatusMethodNotAllowed)
			return
		}
		p := path.Clean("/" + r.URL.Path)
		if p == "/api" || strings.HasPrefix(p, "/api/") {
			http.NotFound(w, r)
			return
		}
		name := strings.TrimPrefix(p, "/")
		// index.html by name too: the file server would redirect it to "./".
		if name == "" || name == "index.html" || !exists(name) {
			serveIndex(w, r)
			return
		}
		// Files change with the binary; revalidate instead of caching
		// stale modules across an upgrade.
		w.Header().Set("Cache-Control", "no-cache")
		fileServer.ServeHTTP(w, r)
	})
}

func exists(name string) bool {
	st, err := fs.Stat(files, name)
	return err == nil && !st.IsDir()
}

func serveIndex(w http.ResponseWriter, r *http.Request) {
	b, err := files.ReadFile("index.html")
	if err != nil { // impossible: embedded at build time
		http.Error(w, "web: index.html missing from the build", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(b))
}
