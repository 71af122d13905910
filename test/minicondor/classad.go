package minicondor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// The simulator's own ClassAd JSON codec: how condor_q -json and condor_history -json print ads,
// and how the simulator reads them back (its state files use the same form). It follows
// HTCondor's ClassAdJsonUnParser (see plugins/htcondor/testdata/real/README.md), and its tests
// read and rewrite real condor_q output. It shares no code with the HTCondor launcher's reader
// on purpose: a misreading of the format cannot hide by being the same on both sides.

// Expression is a ClassAd expression that is not a literal (an attribute reference, an operator, a
// function call), kept as its text. The simulator never evaluates one (see the package
// comment); JSON shows it as the string "\/Expr(<text>)\/".
type Expression string

const (
	exprPrefix = "/Expr("
	exprSuffix = ")/"
)

// MarshalAds writes ads as condor_q -json and condor_history -json print them: "[", the ads
// separated by a line holding ",", "]", a newline. No ads give no output at all, as the real
// tools print nothing when nothing matches.
func MarshalAds(ads []Ad) ([]byte, error) {
	if len(ads) == 0 {
		return nil, nil
	}
	var b bytes.Buffer
	b.WriteString("[\n")
	for i, ad := range ads {
		if i > 0 {
			b.WriteString("\n,\n")
		}
		if err := writeAd(&b, ad, 0); err != nil {
			return nil, err
		}
	}
	b.WriteString("\n]\n")
	return b.Bytes(), nil
}

// MarshalAd writes one ad as an object, its attributes sorted case-insensitively as condor_q
// sorts them.
func MarshalAd(ad Ad) ([]byte, error) {
	var b bytes.Buffer
	if err := writeAd(&b, ad, 0); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func writeAd(b *bytes.Buffer, ad Ad, indent int) error {
	names := make([]string, 0, len(ad))
	for n := range ad {
		names = append(names, n)
	}
	slices.SortFunc(names, func(x, y string) int {
		if c := strings.Compare(strings.ToLower(x), strings.ToLower(y)); c != 0 {
			return c
		}
		return strings.Compare(x, y)
	})
	b.WriteByte('{')
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n" + strings.Repeat(" ", indent+2) + `"`)
		writeEscaped(b, n)
		b.WriteString(`": `)
		if err := writeValue(b, ad[n], indent+2); err != nil {
			return fmt.Errorf("attribute %s: %w", n, err)
		}
	}
	b.WriteString("\n" + strings.Repeat(" ", indent) + "}")
	return nil
}

func writeValue(b *bytes.Buffer, v any, indent int) error {
	switch x := v.(type) {
	case nil:
		b.WriteString("null") // undefined
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case int:
		b.WriteString(strconv.Itoa(x))
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case float64:
		writeReal(b, x)
	case string:
		b.WriteByte('"')
		writeEscaped(b, x)
		b.WriteByte('"')
	case Expression:
		writeExpr(b, string(x))
	case Ad:
		return writeAd(b, x, indent)
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString("\n" + strings.Repeat(" ", indent+2))
			if err := writeValue(b, e, indent+2); err != nil {
				return err
			}
		}
		b.WriteString("\n" + strings.Repeat(" ", indent) + "]")
	default:
		return fmt.Errorf("value %v of type %T has no ClassAd form", v, v)
	}
	return nil
}

// writeReal writes a real as HTCondor does: "%.16G", with ".0" when that reads as an integer;
// NaN and the infinities are expressions.
func writeReal(b *bytes.Buffer, f float64) {
	switch {
	case math.IsNaN(f):
		writeExpr(b, `real("NaN")`)
	case math.IsInf(f, 1):
		writeExpr(b, `real("INF")`)
	case math.IsInf(f, -1):
		writeExpr(b, `real("-INF")`)
	case f == 0:
		if math.Signbit(f) {
			b.WriteString("-0.0")
		} else {
			b.WriteString("0.0")
		}
	default:
		s := strconv.FormatFloat(f, 'G', 16, 64)
		if !strings.ContainsAny(s, ".E") {
			s += ".0"
		}
		b.WriteString(s)
	}
}

func writeExpr(b *bytes.Buffer, text string) {
	b.WriteString(`"\/Expr(`)
	writeEscaped(b, text)
	b.WriteString(`)\/"`)
}

// writeEscaped escapes a string as HTCondor does: quote, backslash and the C control escapes,
// other control bytes as \u00XX, everything else (slashes, UTF-8) as is.
func writeEscaped(b *bytes.Buffer, s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if c > 0 && c < 32 {
				fmt.Fprintf(b, `\u00%02X`, c)
			} else {
				b.WriteByte(c)
			}
		}
	}
}

// ParseAds reads condor_q -json or condor_history -json output (an array of ads; empty output
// is no ads) or a single ad. Values become: integers int64, reals (a number written with ".",
// "e" or "E") float64, strings, booleans, null nil (undefined), "/Expr(…)/" strings Expr,
// objects Ad, arrays []any.
func ParseAds(data []byte) ([]Ad, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("classad json: %w", err)
	}
	var ads []Ad
	switch tok {
	case json.Delim('['):
		for dec.More() {
			t, err := dec.Token()
			if err != nil {
				return nil, fmt.Errorf("classad json: %w", err)
			}
			if t != json.Delim('{') {
				return nil, fmt.Errorf("classad json: an array element is %v, not an ad", t)
			}
			ad, err := parseAd(dec)
			if err != nil {
				return nil, err
			}
			ads = append(ads, ad)
		}
		if _, err := dec.Token(); err != nil { // ']'
			return nil, fmt.Errorf("classad json: %w", err)
		}
	case json.Delim('{'):
		ad, err := parseAd(dec)
		if err != nil {
			return nil, err
		}
		ads = append(ads, ad)
	default:
		return nil, fmt.Errorf("classad json: starts with %v, not an ad or a list of ads", tok)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("classad json: data after the ads")
	}
	return ads, nil
}

// parseAd reads the attributes of an object whose '{' was read.
func parseAd(dec *json.Decoder) (Ad, error) {
	ad := Ad{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("classad json: %w", err)
		}
		name := t.(string) // object keys are always strings
		v, err := parseValue(dec)
		if err != nil {
			return nil, fmt.Errorf("classad json: attribute %s: %w", name, err)
		}
		ad[name] = v
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, fmt.Errorf("classad json: %w", err)
	}
	return ad, nil
}

func parseValue(dec *json.Decoder) (any, error) {
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch x := t.(type) {
	case nil, bool:
		return x, nil
	case string:
		if strings.HasPrefix(x, exprPrefix) && strings.HasSuffix(x, exprSuffix) && len(x) >= len(exprPrefix)+len(exprSuffix) {
			return Expression(x[len(exprPrefix) : len(x)-len(exprSuffix)]), nil
		}
		return x, nil
	case json.Number:
		if strings.ContainsAny(string(x), ".eE") {
			return strconv.ParseFloat(string(x), 64)
		}
		return strconv.ParseInt(string(x), 10, 64)
	case json.Delim:
		switch x {
		case '{':
			return parseAd(dec)
		case '[':
			var list []any
			for dec.More() {
				v, err := parseValue(dec)
				if err != nil {
					return nil, err
				}
				list = append(list, v)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return nil, err
			}
			if list == nil {
				list = []any{}
			}
			return list, nil
		}
	}
	return nil, fmt.Errorf("unexpected %v", t)
}
