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
	"unicode"
	"unicode/utf8"

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
// A scalar with a control character (other than tab and line breaks) is an
// error too: no name, address or setting has one, and an escaped NUL
// ("\0") would otherwise reach logs, metrics and file names. (yaml.v3
// itself refuses invalid UTF-8 and escapes that would make it.)
func Decode(file string, data []byte, v any) (*Doc, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, rewrite(file, data, err)
	}
	if err := checkScalars(file, &root, 0); err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty document", file)
		}
		return nil, rewrite(file, data, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("%s:%d: a second YAML document is not allowed", file, extra.Line)
	}
	return &Doc{File: file, root: &root}, nil
}

// checkScalars refuses the first scalar (key or value) holding a control
// character. yaml.v3 bounds the depth of what it parsed,
// so the recursion is bounded too.
func checkScalars(file string, n *yaml.Node, depth int) error {
	if n == nil || depth > 20000 {
		return nil
	}
	if n.Kind == yaml.ScalarNode {
		for _, r := range n.Value {
			if unicode.IsControl(r) && r != '\t' && r != '\n' && r != '\r' {
				return fmt.Errorf("%s:%d: %s holds the control character %U", file, n.Line, Quote(n.Value), r)
			}
		}
	}
	for _, c := range n.Content {
		if err := checkScalars(file, c, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// rewrite turns yaml.v3's "yaml: line 3: ..." messages into "file:3: ...",
// one line per problem. yaml.v3 gives no line for some problems (too deep
// nesting, an unknown anchor, anything found on the first line); the line
// is then found from data.
func rewrite(file string, data []byte, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var errs []error
		for _, msg := range te.Errors {
			errs = append(errs, oneLine(file, data, msg))
		}
		return errors.Join(errs...)
	}
	return oneLine(file, data, strings.TrimPrefix(err.Error(), "yaml: "))
}

// maxMessage bounds one problem's text: yaml.v3 echoes keys whole.
const maxMessage = 300

func oneLine(file string, data []byte, msg string) error {
	if m := lineRE.FindStringSubmatchIndex(msg); m != nil {
		line := msg[m[2]:m[3]]
		return fmt.Errorf("%s:%s: %s", file, line, shorten(msg[:m[0]]+msg[m[1]:]))
	}
	if line := findLine(data, msg); line > 0 {
		return fmt.Errorf("%s:%d: %s", file, line, shorten(msg))
	}
	return fmt.Errorf("%s: %s", file, shorten(msg))
}

// maxProblem bounds one semantic problem's text.
const maxProblem = 1024

func shorten(msg string) string { return shortenTo(msg, maxMessage) }

func shortenTo(msg string, max int) string {
	if len(msg) <= max {
		return msg
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%d bytes)", msg[:cut], len(msg))
}

var anchorRE = regexp.MustCompile(`^unknown anchor '(.*)' referenced$`)

// findLine finds the line of a problem yaml.v3 reported without one, 0 if
// it cannot. An unknown anchor is at its first alias not preceded by the
// anchor's definition; for anything else the line is the first at which
// the document up to and including that line fails with the same message
// (a binary search over prefixes: yaml.v3 reads left to right, so a prefix
// holding the culprit fails as the whole does, a shorter one does not).
func findLine(data []byte, msg string) int {
	if m := anchorRE.FindStringSubmatch(msg); m != nil {
		alias := regexp.MustCompile(`\*` + regexp.QuoteMeta(m[1]) + `($|[\s,\]}])`)
		if i := alias.FindIndex(data); i != nil {
			return 1 + bytes.Count(data[:i[0]], []byte("\n"))
		}
		return 0
	}
	if len(data) > maxSearch {
		return 0
	}
	ends := lineEnds(data)
	fails := func(k int) bool { // the first k lines fail like the whole
		var n yaml.Node
		err := yaml.Unmarshal(data[:ends[k-1]], &n)
		return err != nil && strings.TrimPrefix(err.Error(), "yaml: ") == msg
	}
	lo, hi := 1, len(ends)
	if hi == 0 || !fails(hi) {
		return 0
	}
	for lo < hi {
		mid := (lo + hi) / 2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// maxSearch bounds the documents findLine searches by parsing: each probe
// parses a prefix again, about log2(lines) of them.
const maxSearch = 4 << 20

// lineEnds gives, for each line, the offset just past it.
func lineEnds(data []byte) []int {
	var ends []int
	for i, c := range data {
		if c == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		ends = append(ends, len(data))
	}
	return ends
}

// Quote renders a value from a file for an error message, cut short when
// long: a 1 MB name must not be echoed whole into logs and API answers.
func Quote(s string) string {
	const max = 64
	if len(s) <= max {
		return strconv.Quote(s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(s[:cut]), len(s))
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
	// Callers should quote values with Quote; this bounds the ones that
	// do not (a 1 MB name must not reach logs and API answers whole).
	msg := shortenTo(fmt.Sprintf(format, args...), maxProblem)
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
