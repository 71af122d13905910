package minicondor

import (
	"fmt"
	"strings"
)

// SplitNewSyntax parses a value in HTCondor's "new" quoted syntax (used by `arguments` and
// `environment`): the whole value is in double quotes, a literal double quote is written "",
// words are separated by whitespace, a word (or part of one) in single quotes keeps its
// whitespace, and a literal single quote inside single quotes is written as two single
// quotes. It returns the words. A value not in double quotes is an error (the simulator does not do the old syntax).
func SplitNewSyntax(v string) ([]string, error) {
	v = strings.TrimSpace(v)
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return nil, fmt.Errorf("value %q is not in the new (double-quoted) syntax", v)
	}
	inner := v[1 : len(v)-1]
	// Undo "" first; a lone " inside is an error.
	var b strings.Builder
	for i := 0; i < len(inner); i++ {
		if inner[i] == '"' {
			if i+1 < len(inner) && inner[i+1] == '"' {
				b.WriteByte('"')
				i++
				continue
			}
			return nil, fmt.Errorf("value %q has an unescaped double quote", v)
		}
		b.WriteByte(inner[i])
	}
	s := b.String()
	var words []string
	var cur strings.Builder
	inWord, inQuote := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inQuote && c == '\'':
			if i+1 < len(s) && s[i+1] == '\'' {
				cur.WriteByte('\'')
				i++
			} else {
				inQuote = false
			}
		case inQuote:
			cur.WriteByte(c)
		case c == '\'':
			inQuote, inWord = true, true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inQuote {
		return nil, fmt.Errorf("value %q has an unterminated single quote", v)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// ParseEnvironment parses an `environment` value in the new syntax into NAME=value entries.
func ParseEnvironment(v string) ([]string, error) {
	words, err := SplitNewSyntax(v)
	if err != nil {
		return nil, fmt.Errorf("environment: %w", err)
	}
	for _, w := range words {
		if k, _, ok := strings.Cut(w, "="); !ok || k == "" {
			return nil, fmt.Errorf("environment: entry %q is not NAME=value", w)
		}
	}
	return words, nil
}
