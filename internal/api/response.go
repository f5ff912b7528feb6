package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
)

// errorType is the "errorType" of the Prometheus API envelope; each maps to
// the HTTP status Prometheus uses for it.
type errorType struct {
	name   string
	status int
}

var (
	errorBadData      = errorType{"bad_data", http.StatusBadRequest}
	errorTooLarge     = errorType{"bad_data", http.StatusRequestEntityTooLarge}
	errorExec         = errorType{"execution", http.StatusUnprocessableEntity}
	errorCanceled     = errorType{"canceled", 499} // nginx's "client closed request", as Prometheus
	errorTimeout      = errorType{"timeout", http.StatusServiceUnavailable}
	errorInternal     = errorType{"internal", http.StatusInternalServerError}
	errorNotFound     = errorType{"not_found", http.StatusNotFound}
	errorUnavailable  = errorType{"unavailable", http.StatusServiceUnavailable}
	errorUnauthorized = errorType{"unauthorized", http.StatusUnauthorized}
	errorForbidden    = errorType{"forbidden", http.StatusForbidden}
)

// writeError writes {"status":"error","errorType":...,"error":...}.
func writeError(w http.ResponseWriter, typ errorType, err error) {
	body, _ := json.Marshal(struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
	}{"error", typ.name, err.Error()})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(typ.status)
	_, _ = w.Write(body)
}

// writeData writes {"status":"success","data":...} with data encoded by
// encoding/json, plus warnings and infos when present.
func writeData(w http.ResponseWriter, data any, warnings, infos []string) {
	raw, err := json.Marshal(data)
	if err != nil {
		writeError(w, errorInternal, err)
		return
	}
	writeRawData(w, raw, warnings, infos)
}

// envelopeField is a top-level field of a success envelope beside data,
// already encoded (/api/v1/pairs's pair_detail).
type envelopeField struct {
	name  string
	value []byte
}

// writeRawData is writeData for data already encoded, with extra
// top-level fields.
func writeRawData(w http.ResponseWriter, data []byte, warnings, infos []string, extra ...envelopeField) {
	var b bytes.Buffer
	b.Grow(len(data) + 64)
	b.WriteString(`{"status":"success","data":`)
	b.Write(data)
	if len(warnings) > 0 {
		b.WriteString(`,"warnings":`)
		appendStrings(&b, warnings)
	}
	if len(infos) > 0 {
		b.WriteString(`,"infos":`)
		appendStrings(&b, infos)
	}
	for _, f := range extra {
		b.WriteString(`,"` + f.name + `":`)
		b.Write(f.value)
	}
	b.WriteByte('}')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	_, _ = w.Write(b.Bytes())
}

func appendStrings(b *bytes.Buffer, ss []string) {
	raw, _ := json.Marshal(ss) // []string always encodes
	b.Write(raw)
}
