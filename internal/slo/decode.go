package slo

import (
	"errors"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"github.com/meshlens/meshlens/internal/yamlfile"
)

// decode is yamlfile.Decode with yaml.v3's messages, which name Go types
// ("field x not found in type slo.openObjective", "cannot unmarshal !!seq
// into slo.nativeFile"), rewritten to say what the file should hold.
func decode(file string, data []byte, v any) (*yamlfile.Doc, error) {
	doc, err := yamlfile.Decode(file, data, v)
	if err == nil {
		return doc, nil
	}
	types := map[string]reflect.Type{}
	collectTypes(reflect.TypeOf(v), types)
	var out []error
	for _, e := range unjoin(err) {
		out = append(out, errors.New(humanize(e.Error(), types)))
	}
	return nil, errors.Join(out...)
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

var (
	// The type runs to the end of the message: an anonymous struct's
	// name holds spaces ("struct { Name string ... }").
	unknownFieldRE = regexp.MustCompile(`field (.+?) not found in type (.+)$`)
	unmarshalRE    = regexp.MustCompile("cannot unmarshal !!(\\w+)(?: `([^`]*)`)? into (.+)$")
)

func humanize(msg string, types map[string]reflect.Type) string {
	if m := unknownFieldRE.FindStringSubmatchIndex(msg); m != nil {
		field, tn := msg[m[2]:m[3]], msg[m[4]:m[5]]
		repl := "unknown field " + field
		if t, ok := types[tn]; ok {
			repl += " (known here: " + strings.Join(fieldNames(t), ", ") + ")"
		}
		return msg[:m[0]] + repl + msg[m[1]:]
	}
	if m := unmarshalRE.FindStringSubmatchIndex(msg); m != nil {
		got := yamlTag(msg[m[2]:m[3]])
		if m[4] >= 0 {
			got += " " + yamlfile.Quote(msg[m[4]:m[5]])
		}
		want := "another value"
		if t, ok := types[msg[m[6]:m[7]]]; ok {
			want = describe(t)
		}
		return msg[:m[0]] + "want " + want + " here, not " + got + msg[m[1]:]
	}
	return msg
}

func yamlTag(tag string) string {
	switch tag {
	case "seq":
		return "a list"
	case "map":
		return "a mapping"
	case "str":
		return "the string"
	case "int", "float":
		return "the number"
	case "bool":
		return "the boolean"
	}
	return "a " + tag
}

// describe says in YAML words what a Go type holds.
func describe(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		return "a mapping (" + strings.Join(fieldNames(t), ", ") + ")"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "a string or a list of strings"
		}
		return "a list"
	case reflect.Map:
		return "a mapping"
	case reflect.String:
		return "a string"
	case reflect.Float64, reflect.Int:
		return "a number"
	case reflect.Bool:
		return "true or false"
	}
	return "another value"
}

// fieldNames are the YAML keys of a struct, inlined ones included.
func fieldNames(t reflect.Type) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		switch {
		case strings.Contains(opts, "inline"):
			// An inlined map takes every other key: it names none.
			if ft := f.Type; ft.Kind() == reflect.Struct || ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct {
				out = append(out, fieldNames(ft)...)
			}
		case name == "-" || !f.IsExported():
		case name != "":
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// collectTypes indexes t and the types under it by the names yaml.v3
// prints.
func collectTypes(t reflect.Type, seen map[string]reflect.Type) {
	if t == nil {
		return
	}
	if _, ok := seen[t.String()]; ok {
		return
	}
	seen[t.String()] = t
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Map:
		collectTypes(t.Elem(), seen)
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			collectTypes(t.Field(i).Type, seen)
		}
	}
}

// warnings turns the problems collected as warnings into lines.
func warnings(p *yamlfile.Problems) []string {
	err := p.Err()
	if err == nil {
		return nil
	}
	var out []string
	for _, e := range unjoin(err) {
		out = append(out, e.Error())
	}
	return out
}
