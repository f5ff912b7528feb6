// Package yamlfile reads meshlens's YAML files (topology, scenarios, SLOs,
// configs) strictly and reports problems as file:line: field: message, so an
// operator can jump straight to the mistake. It imports no meshlens package.
package yamlfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Doc is a decoded file kept with its node tree, so later semantic checks
// can point at the line of any field.
type Doc struct {
	File string
	root *yaml.Node
}

var lineRE = regexp.MustCompile(`line (\d+): `)

// Decode strictly decodes data (unknown keys, wrong types and trailing
// documents are errors) into v and returns the document for line look-ups.
func Decode(file string, data []byte, v any) (*Doc, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty document", file)
		}
		return nil, rewrite(file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("%s:%d: a second YAML document is not allowed", file, extra.Line)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, rewrite(file, err)
	}
	return &Doc{File: file, root: &root}, nil
}

// rewrite turns yaml.v3's "yaml: line 3: ..." messages into "file:3: ...",
// one line per problem.
func rewrite(file string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var errs []error
		for _, msg := range te.Errors {
			errs = append(errs, oneLine(file, msg))
		}
		return errors.Join(errs...)
	}
	return oneLine(file, strings.TrimPrefix(err.Error(), "yaml: "))
}

func oneLine(file, msg string) error {
	if m := lineRE.FindStringSubmatchIndex(msg); m != nil {
		line := msg[m[2]:m[3]]
		return fmt.Errorf("%s:%s: %s", file, line, msg[:m[0]]+msg[m[1]:])
	}
	return fmt.Errorf("%s: %s", file, msg)
}

// Line returns the line of the node at path (map keys as strings, list
// indexes as ints), or of the closest existing ancestor.
func (d *Doc) Line(path ...any) int {
	if d == nil || d.root == nil {
		return 0
	}
	n := d.root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, p := range path {
		next := child(n, p)
		if next == nil {
			break
		}
		n = next
		line = n.Line
	}
	return line
}

func child(n *yaml.Node, p any) *yaml.Node {
	switch key := p.(type) {
	case string:
		if n.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				// A scalar's line is where its key is; point at the key so the
				// report lines up with what the user wrote.
				if n.Content[i+1].Kind == yaml.ScalarNode {
					c := *n.Content[i+1]
					c.Line = n.Content[i].Line
					return &c
				}
				return n.Content[i+1]
			}
		}
	case int:
		if n.Kind == yaml.SequenceNode && key >= 0 && key < len(n.Content) {
			return n.Content[key]
		}
	}
	return nil
}

// FieldPath renders a path the way users write it: hosts[3].addr.
func FieldPath(path ...any) string {
	var b strings.Builder
	for _, p := range path {
		switch v := p.(type) {
		case int:
			b.WriteString("[" + strconv.Itoa(v) + "]")
		default:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			fmt.Fprint(&b, v)
		}
	}
	return b.String()
}

// Problems collects semantic errors, each placed at a field's line.
type Problems struct {
	doc  *Doc
	errs []located
}

type located struct {
	line int
	err  error
}

// NewProblems starts a collection for doc (which may be nil for values
// that did not come from a file).
func (d *Doc) NewProblems() *Problems { return &Problems{doc: d} }

// Addf records a problem at path.
func (p *Problems) Addf(path []any, format string, args ...any) {
	file := "<input>"
	if p.doc != nil {
		file = p.doc.File
	}
	line := p.doc.Line(path...)
	msg := fmt.Sprintf(format, args...)
	var err error
	if fp := FieldPath(path...); fp != "" {
		err = fmt.Errorf("%s:%d: %s: %s", file, line, fp, msg)
	} else {
		err = fmt.Errorf("%s:%d: %s", file, line, msg)
	}
	p.errs = append(p.errs, located{line, err})
}

// Err returns all problems, in file order, or nil.
func (p *Problems) Err() error {
	if len(p.errs) == 0 {
		return nil
	}
	sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].line < p.errs[j].line })
	errs := make([]error, len(p.errs))
	for i, e := range p.errs {
		errs[i] = e.err
	}
	return errors.Join(errs...)
}

// Path builds a path slice: yamlfile.Path("hosts", 3, "addr").
func Path(p ...any) []any { return p }
