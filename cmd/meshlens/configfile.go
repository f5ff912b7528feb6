package main

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"github.com/meshlens/meshlens/internal/yamlfile"
)

// A config file holds a command's flags as YAML: each key is a flag's name
// with its dashes written as underscores (the MESHLENS_* variable's, in
// lower case), each value what the flag takes, a list for a repeatable
// flag. It fills only the flags that neither the command line nor the
// environment set: flags > MESHLENS_* > file > defaults.

// notInConfigFile are flags a config file may not set: the file's own
// name, and what only makes sense typed.
var notInConfigFile = map[string]bool{"config": true, "help": true, "version": true}

// applyConfigFile sets every flag of fs still unset from the file at path.
// Unknown keys, keys given twice, values of the wrong shape and values the
// flag refuses are errors naming the file, line and key.
func applyConfigFile(fs *pflag.FlagSet, path string) error {
	data, err := yamlfile.ReadFile(path, yamlfile.MaxConfigBytes)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var root yaml.Node
	if _, err := yamlfile.Decode(path, data, &root); err != nil {
		return err
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	if doc.Kind != yaml.MappingNode {
		return fmt.Errorf("%s:%d: want a mapping of flag names to values", path, doc.Line)
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(doc.Content); i += 2 {
		k, v := doc.Content[i], doc.Content[i+1]
		key := k.Value
		at := fmt.Sprintf("%s:%d: %s", path, k.Line, key)
		if line, dup := seen[key]; dup {
			return fmt.Errorf("%s: given twice (first on line %d)", at, line)
		}
		seen[key] = k.Line
		name := strings.ReplaceAll(key, "_", "-")
		f := fs.Lookup(name)
		switch {
		case k.Kind != yaml.ScalarNode || key == "":
			return fmt.Errorf("%s:%d: a key must be a flag name", path, k.Line)
		case strings.Contains(key, "-") && f != nil:
			return fmt.Errorf("%s: unknown key: write it %s (flag names with underscores)", at, strings.ReplaceAll(key, "-", "_"))
		case f == nil || notInConfigFile[name] || f.Hidden:
			return fmt.Errorf("%s: unknown key (not a flag of this command; see --help)", at)
		}
		if f.Changed {
			continue // set by a flag or MESHLENS_*, which take precedence
		}
		if err := setFromNode(fs, f, v); err != nil {
			return fmt.Errorf("%s: %w", at, err)
		}
	}
	return nil
}

func setFromNode(fs *pflag.FlagSet, f *pflag.Flag, v *yaml.Node) error {
	switch v.Kind {
	case yaml.ScalarNode:
		if v.Tag == "!!null" {
			return fmt.Errorf("no value (line %d)", v.Line)
		}
		if err := fs.Set(f.Name, v.Value); err != nil {
			return fmt.Errorf("invalid value %s: %w", yamlfile.Quote(v.Value), err)
		}
		return nil
	case yaml.SequenceNode:
		list, ok := f.Value.(pflag.SliceValue)
		if !ok {
			return fmt.Errorf("a list, and --%s takes one value (line %d)", f.Name, v.Line)
		}
		items := make([]string, 0, len(v.Content))
		for _, it := range v.Content {
			if it.Kind != yaml.ScalarNode || it.Tag == "!!null" {
				return fmt.Errorf("line %d: a list item must be a value", it.Line)
			}
			items = append(items, it.Value)
		}
		if err := list.Replace(items); err != nil {
			return fmt.Errorf("invalid list: %w", err)
		}
		f.Changed = true
		return nil
	}
	return fmt.Errorf("want a value or a list (line %d)", v.Line)
}
