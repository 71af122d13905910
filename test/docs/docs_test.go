package docs

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestExtract(t *testing.T) {
	md := "# t\n\n```sh\necho one\n```\n\n<!-- docs-test: skip: needs a pool -->\n```bash\nmake x\n```\n\n```json\n{\"a\": 1}\n```\n\n```sh\n  echo \"two\"\n```\n"
	p := filepath.Join(t.TempDir(), "t.md")
	if err := os.WriteFile(p, []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
	bs, err := Extract(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 3 || bs[0].Code != "echo one\n" || bs[1].Skip != "needs a pool" || bs[1].Line != 8 || bs[2].Code != "  echo \"two\"\n" {
		t.Fatalf("blocks %+v", bs)
	}
	s := Script("P\n", bs)
	if strings.Contains(s, "make x") || !strings.Contains(s, "echo one") || !strings.HasPrefix(s, "set -eo pipefail\nP\n") {
		t.Fatalf("script:\n%s", s)
	}
	for name, bad := range map[string]string{
		"unterminated":     "```sh\necho\n",
		"marker no reason": "<!-- docs-test: skip: -->\n```sh\nx\n```\n",
		"marker on json":   "<!-- docs-test: skip: x -->\n```json\n{}\n```\n",
		"marker astray":    "<!-- docs-test: skip: x -->\ntext\n```sh\nx\n```\n",
	} {
		if err := os.WriteFile(p, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Extract(p); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestCommands(t *testing.T) {
	code := "source .dev/env\nID=$(curl -s x | jq -er .id)\nfor f in a; do echo \"$f\"; done\n" +
		"until cts get \"$ID\" | jq -e . >/dev/null; do sleep 1; done\nsource <(cts completion bash)\n" +
		"cat > x <<EOF\nnot a command\nEOF\n$CMD arg\n"
	got, err := Commands(code)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"cat", "cts", "curl", "echo", "jq", "sleep", "source"}
	if !slices.Equal(got, want) {
		t.Errorf("Commands = %v, want %v", got, want)
	}
	if _, err := Commands("if then"); err == nil {
		t.Error("a block that does not parse gave no error")
	}
}
