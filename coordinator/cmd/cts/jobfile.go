package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/kbase/cts/coordinator/client"
)

// readJobFile reads a job file: the CTS JobInput as JSON, or as YAML (by extension .yaml or
// .yml; other names are tried as JSON, then YAML). Unknown keys are refused here, as the service
// would refuse them.
func readJobFile(path string) (*client.JobInput, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("job file: %w", err)
	}
	ext := strings.ToLower(filepath.Ext(path))
	js := b
	if ext == ".yaml" || ext == ".yml" || (ext != ".json" && !json.Valid(b)) {
		if js, err = yamlToJSON(b); err != nil {
			return nil, fmt.Errorf("job file %s: %w", path, err)
		}
	}
	in, err := client.DecodeJobInput(js)
	if err != nil {
		return nil, fmt.Errorf("job file %s: %w", path, err)
	}
	return in, nil
}

// yamlToJSON converts one YAML document to JSON, keeping the order of mapping keys (the order
// of params.environment is the container's environment order).
func yamlToJSON(b []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	if doc.Kind == 0 {
		return nil, errors.New("empty YAML document")
	}
	var out bytes.Buffer
	if err := writeNode(&out, &doc, 0); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func writeNode(w *bytes.Buffer, n *yaml.Node, depth int) error {
	if depth > 100 {
		return errors.New("YAML nested too deeply")
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) != 1 {
			return errors.New("want one YAML document")
		}
		return writeNode(w, n.Content[0], depth+1)
	case yaml.AliasNode:
		return writeNode(w, n.Alias, depth+1)
	case yaml.MappingNode:
		w.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: mapping keys must be strings", k.Line)
			}
			if k.Tag == "!!merge" {
				return fmt.Errorf("line %d: YAML merge keys are not supported", k.Line)
			}
			if i > 0 {
				w.WriteByte(',')
			}
			kb, _ := json.Marshal(k.Value)
			w.Write(kb)
			w.WriteByte(':')
			if err := writeNode(w, v, depth+1); err != nil {
				return err
			}
		}
		w.WriteByte('}')
		return nil
	case yaml.SequenceNode:
		w.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				w.WriteByte(',')
			}
			if err := writeNode(w, c, depth+1); err != nil {
				return err
			}
		}
		w.WriteByte(']')
		return nil
	case yaml.ScalarNode:
		return writeScalar(w, n)
	}
	return fmt.Errorf("line %d: unsupported YAML node", n.Line)
}

func writeScalar(w *bytes.Buffer, n *yaml.Node) error {
	var v any
	switch n.ShortTag() {
	case "!!null":
		w.WriteString("null")
		return nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return err
		}
		v = b
	case "!!int":
		var i int64
		if err := n.Decode(&i); err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		v = i
	case "!!float":
		var f float64
		if err := n.Decode(&f); err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("line %d: %s is not a JSON number", n.Line, n.Value)
		}
		v = f
	default: // strings, timestamps, binary: the text as written
		v = n.Value
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Write(b)
	return nil
}
