package yamlfile

import (
	"strings"
	"testing"
)

type doc struct {
	Name  string `yaml:"name"`
	Items []struct {
		ID   int    `yaml:"id"`
		Kind string `yaml:"kind"`
	} `yaml:"items"`
}

func TestDecodeErrorsCarryFileAndLine(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"unknown key", "name: a\ncolour: red\n", "f.yaml:2: field colour not found"},
		{"wrong type", "name: a\nitems:\n  - {id: x}\n", "f.yaml:3: cannot unmarshal"},
		{"two documents", "name: a\n---\nname: b\n", "f.yaml:2: a second YAML document"},
		{"empty", "", "f.yaml: empty document"},
		{"syntax", "name: [a\n", "f.yaml:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d doc
			_, err := Decode("f.yaml", []byte(tc.in), &d)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestProblemsPointAtFields(t *testing.T) {
	in := "name: a\nitems:\n  - {id: 1, kind: x}\n  - id: 2\n    kind: y\n"
	var d doc
	f, err := Decode("f.yaml", []byte(in), &d)
	if err != nil {
		t.Fatal(err)
	}
	p := f.NewProblems()
	p.Addf(Path("items", 1, "kind"), "kind %q is wrong", d.Items[1].Kind)
	p.Addf(Path("items", 0), "first")
	p.Addf(Path("nope", 3), "missing path falls back to the closest ancestor")
	got := p.Err().Error()
	want := "f.yaml:1: nope[3]: missing path falls back to the closest ancestor\nf.yaml:3: items[0]: first\nf.yaml:5: items[1].kind: kind \"y\" is wrong"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if f.NewProblems().Err() != nil {
		t.Fatal("no problems must be a nil error")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("name: a\nitems: [{id: 1}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var d doc
		_, err := Decode("fuzz.yaml", data, &d)
		if err != nil && !strings.HasPrefix(err.Error(), "fuzz.yaml") {
			t.Fatalf("error without the file name: %v", err)
		}
	})
}
