// Package docs extracts the shell blocks of the user documentation (README.md, docs/users.md,
// docs/cli.md, docs/examples.md) so that a test can run them, verbatim, against a fresh dev
// site. A block that cannot run there (production HTCondor setup, a command that runs in the
// foreground) is marked in the markdown, on the line just before its fence, with
//
//	<!-- docs-test: skip: the reason -->
//
// and the test names it and its reason in its log. Keep that set small.
package docs

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// Block is one fenced shell block of a markdown file.
type Block struct {
	File string // the markdown file, as given to Extract
	Line int    // the line of the opening fence (1-based)
	Code string // the block's lines, verbatim
	// Skip is the reason given by a skip marker, or "".
	Skip string
}

// Where is "file:line".
func (b Block) Where() string { return fmt.Sprintf("%s:%d", b.File, b.Line) }

// shellLangs are the fence info strings of shell blocks.
var shellLangs = map[string]bool{"sh": true, "bash": true, "shell": true, "console": false}

const skipMarker = "<!-- docs-test: skip:"

// Extract returns the shell blocks of the markdown file path, in order. An unterminated fence
// or a skip marker not followed by a shell block is an error.
func Extract(path string) ([]Block, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var (
		blocks  []Block
		cur     *Block
		code    []string
		inOther bool
		fence   string
		skip    string
		skipAt  int
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case cur != nil:
			if trimmed == fence {
				cur.Code = strings.Join(code, "\n") + "\n"
				blocks = append(blocks, *cur)
				cur, code = nil, nil
				continue
			}
			code = append(code, line)
		case inOther:
			if trimmed == fence {
				inOther = false
			}
		case strings.HasPrefix(trimmed, "```"):
			fence = trimmed[:strings.LastIndex(trimmed, "`")+1]
			lang := strings.TrimSpace(strings.TrimPrefix(trimmed, fence))
			if shellLangs[lang] {
				cur = &Block{File: path, Line: n, Skip: skip}
			} else {
				if skip != "" {
					return nil, fmt.Errorf("%s:%d: a skip marker before a %q block (only shell blocks are run)", path, skipAt, lang)
				}
				inOther = true
			}
			skip = ""
		case strings.HasPrefix(trimmed, skipMarker):
			reason := strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(trimmed, skipMarker), "-->"))
			if reason == "" {
				return nil, fmt.Errorf("%s:%d: a skip marker without a reason", path, n)
			}
			skip, skipAt = reason, n
		case trimmed != "" && skip != "":
			return nil, fmt.Errorf("%s:%d: a skip marker not right before a code block", path, skipAt)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if cur != nil || inOther {
		return nil, fmt.Errorf("%s: unterminated code block", path)
	}
	if skip != "" {
		return nil, fmt.Errorf("%s:%d: a skip marker at the end of the file", path, skipAt)
	}
	return blocks, nil
}

// Script returns a bash script that runs blocks in order, in one shell (so a variable set in
// one block is seen by the next, as in a terminal), stopping at the first failing command.
// Before each block it prints "### <where>" to stderr, so a failure can be placed.
func Script(prelude string, blocks []Block) string {
	var b strings.Builder
	b.WriteString("set -eo pipefail\n")
	b.WriteString(prelude)
	for _, bl := range blocks {
		if bl.Skip != "" {
			continue
		}
		fmt.Fprintf(&b, "echo '### %s' >&2\n", bl.Where())
		b.WriteString(bl.Code)
	}
	b.WriteString("echo '### done' >&2\n")
	return b.String()
}

// Commands returns the names of the commands code calls, sorted and without duplicates: the
// first word of every simple command, in pipelines, command substitutions and process
// substitutions too, when that word is a literal (a call through a variable is not a tool).
// code is parsed as bash.
func Commands(code string) ([]string, error) {
	f, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(strings.NewReader(code), "")
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	seen := map[string]bool{}
	syntax.Walk(f, func(n syntax.Node) bool {
		if c, ok := n.(*syntax.CallExpr); ok && len(c.Args) > 0 {
			if name := c.Args[0].Lit(); name != "" {
				seen[name] = true
			}
		}
		return true
	})
	return slices.Sorted(maps.Keys(seen)), nil
}
