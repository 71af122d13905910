package minicondor

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// The constraint language: the subset of ClassAd expressions the CTS plugin and an admin's
// quick query need. Values are undefined, bool, number or string; comparisons with undefined
// give undefined (except the "meta" operators =?= and =!=, which never do); == on strings is
// case-insensitive, =?= case-sensitive, as in ClassAds.

type kind int

const (
	kUndef kind = iota
	kBool
	kNum
	kStr
)

type val struct {
	k kind
	b bool
	n float64
	s string
}

// Expr is a parsed constraint.
type Expr struct{ root node }

type node interface{ eval(Ad) val }

type lit struct{ v val }
type attr struct{ name string }
type not struct{ x node }
type bin struct {
	op   string
	l, r node
}

func (l lit) eval(Ad) val { return l.v }

func (a attr) eval(ad Ad) val {
	for k, v := range ad {
		if strings.EqualFold(k, a.name) {
			return toVal(v)
		}
	}
	return val{}
}

func toVal(v any) val {
	switch x := v.(type) {
	case bool:
		return val{k: kBool, b: x}
	case string:
		return val{k: kStr, s: x}
	case float64:
		return val{k: kNum, n: x}
	case int64:
		return val{k: kNum, n: float64(x)}
	case int:
		return val{k: kNum, n: float64(x)}
	}
	// nil (undefined), and expressions: the simulator does not evaluate those.
	return val{}
}

func (n not) eval(ad Ad) val {
	v := n.x.eval(ad)
	if v.k != kBool {
		return val{}
	}
	return val{k: kBool, b: !v.b}
}

func identical(a, b val) bool {
	if a.k != b.k {
		return false
	}
	switch a.k {
	case kBool:
		return a.b == b.b
	case kNum:
		return a.n == b.n
	case kStr:
		return a.s == b.s
	}
	return true
}

func (b bin) eval(ad Ad) val {
	l := b.l.eval(ad)
	switch b.op {
	case "&&":
		if l.k == kBool && !l.b {
			return l
		}
		r := b.r.eval(ad)
		if r.k == kBool && !r.b {
			return r
		}
		if l.k == kBool && r.k == kBool {
			return val{k: kBool, b: true}
		}
		return val{}
	case "||":
		if l.k == kBool && l.b {
			return l
		}
		r := b.r.eval(ad)
		if r.k == kBool && r.b {
			return r
		}
		if l.k == kBool && r.k == kBool {
			return val{k: kBool}
		}
		return val{}
	}
	r := b.r.eval(ad)
	switch b.op {
	case "=?=":
		return val{k: kBool, b: identical(l, r)}
	case "=!=":
		return val{k: kBool, b: !identical(l, r)}
	}
	if l.k == kUndef || r.k == kUndef {
		return val{}
	}
	if l.k != r.k {
		if b.op == "==" {
			return val{k: kBool, b: false}
		}
		if b.op == "!=" {
			return val{k: kBool, b: true}
		}
		return val{}
	}
	var c int
	switch l.k {
	case kNum:
		switch {
		case l.n < r.n:
			c = -1
		case l.n > r.n:
			c = 1
		}
	case kStr:
		c = strings.Compare(strings.ToLower(l.s), strings.ToLower(r.s))
	case kBool:
		if l.b != r.b {
			c = 1
		}
	}
	res := false
	switch b.op {
	case "==":
		res = c == 0
	case "!=":
		res = c != 0
	case "<":
		res = c < 0
	case "<=":
		res = c <= 0
	case ">":
		res = c > 0
	case ">=":
		res = c >= 0
	}
	return val{k: kBool, b: res}
}

// Matches reports whether the expression is true for ad (undefined is not a match).
func (e *Expr) Matches(ad Ad) bool {
	v := e.root.eval(ad)
	return v.k == kBool && v.b
}

// ParseExpr parses a constraint.
func ParseExpr(s string) (*Expr, error) {
	p := &parser{src: s}
	if err := p.lex(); err != nil {
		return nil, err
	}
	n, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.pos != len(p.toks) {
		return nil, fmt.Errorf("constraint %q: unexpected %q", s, p.toks[p.pos].text)
	}
	return &Expr{root: n}, nil
}

type token struct {
	kind byte // 'i' ident, 's' string, 'n' number, 'o' operator
	text string
}

type parser struct {
	src  string
	toks []token
	pos  int
}

var ops = []string{"=?=", "=!=", "==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "(", ")"}

func (p *parser) lex() error {
	s := p.src
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '"':
			var b strings.Builder
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return fmt.Errorf("constraint %q: unterminated string", s)
			}
			p.toks = append(p.toks, token{'s', b.String()})
			i = j + 1
		case c >= '0' && c <= '9' || c == '-' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			j := i + 1
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.' || s[j] == 'e' || s[j] == 'E') {
				j++
			}
			p.toks = append(p.toks, token{'n', s[i:j]})
			i = j
		case unicode.IsLetter(rune(c)) || c == '_':
			j := i + 1
			for j < len(s) && (unicode.IsLetter(rune(s[j])) || unicode.IsDigit(rune(s[j])) || s[j] == '_' || s[j] == '.') {
				j++
			}
			p.toks = append(p.toks, token{'i', s[i:j]})
			i = j
		default:
			found := false
			for _, op := range ops {
				if strings.HasPrefix(s[i:], op) {
					p.toks = append(p.toks, token{'o', op})
					i += len(op)
					found = true
					break
				}
			}
			if !found {
				return fmt.Errorf("constraint %q: unexpected character %q", s, c)
			}
		}
	}
	return nil
}

func (p *parser) peek(op string) bool {
	return p.pos < len(p.toks) && p.toks[p.pos].kind == 'o' && p.toks[p.pos].text == op
}

func (p *parser) or() (node, error) {
	l, err := p.and()
	for err == nil && p.peek("||") {
		p.pos++
		var r node
		r, err = p.and()
		l = bin{"||", l, r}
	}
	return l, err
}

func (p *parser) and() (node, error) {
	l, err := p.unary()
	for err == nil && p.peek("&&") {
		p.pos++
		var r node
		r, err = p.unary()
		l = bin{"&&", l, r}
	}
	return l, err
}

func (p *parser) unary() (node, error) {
	if p.peek("!") {
		p.pos++
		x, err := p.unary()
		return not{x}, err
	}
	return p.cmp()
}

func (p *parser) cmp() (node, error) {
	l, err := p.primary()
	if err != nil {
		return nil, err
	}
	for _, op := range []string{"=?=", "=!=", "==", "!=", "<=", ">=", "<", ">"} {
		if p.peek(op) {
			p.pos++
			r, err := p.primary()
			if err != nil {
				return nil, err
			}
			return bin{op, l, r}, nil
		}
	}
	return l, nil
}

func (p *parser) primary() (node, error) {
	if p.pos >= len(p.toks) {
		return nil, fmt.Errorf("constraint %q: unexpected end", p.src)
	}
	t := p.toks[p.pos]
	p.pos++
	switch t.kind {
	case 's':
		return lit{val{k: kStr, s: t.text}}, nil
	case 'n':
		f, err := strconv.ParseFloat(t.text, 64)
		if err != nil {
			return nil, fmt.Errorf("constraint %q: bad number %q", p.src, t.text)
		}
		return lit{val{k: kNum, n: f}}, nil
	case 'i':
		switch strings.ToLower(t.text) {
		case "true":
			return lit{val{k: kBool, b: true}}, nil
		case "false":
			return lit{val{k: kBool}}, nil
		case "undefined":
			return lit{val{}}, nil
		}
		return attr{t.text}, nil
	}
	if t.text == "(" {
		n, err := p.or()
		if err != nil {
			return nil, err
		}
		if !p.peek(")") {
			return nil, fmt.Errorf("constraint %q: missing ')'", p.src)
		}
		p.pos++
		return n, nil
	}
	return nil, fmt.Errorf("constraint %q: unexpected %q", p.src, t.text)
}
