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
		// yaml.v3 gives these no line; Decode finds it.
		{"too deep, flow", "name: a\nitems:\n  - {id: 1}\nx: " + strings.Repeat("[", 10001) + "\n", "f.yaml:4: exceeded max depth of 10000"},
		{"too deep, first line", strings.Repeat("[", 10001), "f.yaml:1: exceeded max depth of 10000"},
		{"too deep, block", "name: a\nitems: " + strings.Repeat("- ", 10001) + "\n", "f.yaml:2: "},
		{"unknown anchor", "name: a\nitems:\n  - &one {id: 1}\n  - *one\n  - *two\n", "f.yaml:5: unknown anchor 'two' referenced"},
		{"unknown anchor in flow", "name: a\nitems: [*x]\n", "f.yaml:2: unknown anchor 'x' referenced"},
		{"bad character on the first line", "name: @a\n", "f.yaml:1: found character that cannot start any token"},
		// An escaped NUL (or any control character but tab and line
		// breaks) is no name or setting.
		{"escaped NUL", "name: \"a\\0b\"\n", `f.yaml:1: "a\x00b" holds the control character U+0000`},
		{"escaped NUL in a key", "name: a\n\"\\0\": 1\n", `f.yaml:2: "\x00" holds the control character`},
		{"escape character", "name: \"a\\eb\"\n", "U+001B"},
		{"invalid UTF-8", "name: a\nitems: \xff\n", "f.yaml:2: invalid leading UTF-8 octet"},
		// A huge value is not echoed whole.
		{"huge unknown key", "name: a\n? " + strings.Repeat("k", 1<<20) + "\n: 1\n", "f.yaml:2: field kkkk"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d doc
			_, err := Decode("f.yaml", []byte(tc.in), &d)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %.500v, want %q", err, tc.want)
			}
			if len(err.Error()) > 1000 {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
		})
	}
}

func TestDecodeAcceptsTabsAndLineBreaks(t *testing.T) {
	var d doc
	if _, err := Decode("f.yaml", []byte("name: \"a\\tb\\r\\nc\"\n"), &d); err != nil || d.Name != "a\tb\r\nc" {
		t.Fatalf("name %q, err %v", d.Name, err)
	}
}

func TestQuoteCutsLongValues(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"dc1", `"dc1"`},
		{"a\x00", `"a\x00"`},
		{strings.Repeat("x", 1<<20), `"` + strings.Repeat("x", 64) + `"… (1048576 bytes)`},
		{strings.Repeat("é", 40), `"` + strings.Repeat("é", 32) + `"… (80 bytes)`},
	} {
		if got := Quote(tc.in); got != tc.want {
			t.Errorf("Quote(%.20q…) = %.100s, want %.100s", tc.in, got, tc.want)
		}
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
	long := f.NewProblems()
	long.Addf(Path("name"), "name %q is wrong", strings.Repeat("x", 1<<20))
	if msg := long.Err().Error(); len(msg) > 1100 || !strings.HasPrefix(msg, "f.yaml:1: name: name \"xxx") || !strings.HasSuffix(msg, "… (1048592 bytes)") {
		t.Errorf("a problem echoing a 1 MB value is %d bytes: %.100s…%s", len(msg), msg, msg[len(msg)-30:])
	}
	if f.NewProblems().Err() != nil {
		t.Fatal("no problems must be a nil error")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("name: a\nitems: [{id: 1}]\n"))
	f.Add([]byte("name: a\nitems:\n  - &one {id: 1}\n  - *one\n  - *two\n"))
	f.Add([]byte("name: \"a\\0\"\n"))
	f.Add([]byte("name: a\nx: [[[[[[[[\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var d doc
		_, err := Decode("fuzz.yaml", data, &d)
		if err != nil && !strings.HasPrefix(err.Error(), "fuzz.yaml") {
			t.Fatalf("error without the file name: %v", err)
		}
	})
}
