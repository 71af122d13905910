package jobinput

import (
	"encoding/json"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// byteUnits are pydantic ByteSize's units (lower case), plus the single-letter decimal
// forms pydantic derives from them (k, m, g, t, p, e, b).
var byteUnits = map[string]float64{
	"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "pb": 1e15, "eb": 1e18,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40, "pib": 1 << 50, "eib": 1 << 60,
	"bit": 1.0 / 8, "kbit": 1e3 / 8, "mbit": 1e6 / 8, "gbit": 1e9 / 8, "tbit": 1e12 / 8,
	"pbit": 1e15 / 8, "ebit": 1e18 / 8,
	"kibit": (1 << 10) / 8.0, "mibit": (1 << 20) / 8.0, "gibit": (1 << 30) / 8.0,
	"tibit": (1 << 40) / 8.0, "pibit": (1 << 50) / 8.0, "eibit": (1 << 60) / 8.0,
	"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "p": 1e15, "e": 1e18,
}

// byteSizeRE is pydantic's `^\s*(\d*\.?\d+)\s*(\w+)?`, anchored at the end too: pydantic
// ignores whatever follows the unit ("10MB of RAM" is 10 MB); we refuse it.
var byteSizeRE = regexp.MustCompile(`^\s*(\d*\.?\d+)\s*(\w+)?\s*$`)

// pythonIntRE is what Python's int(str) accepts: surrounding whitespace, a sign, digits
// with single underscores between them.
var pythonIntRE = regexp.MustCompile(`^\s*[+-]?\d+(?:_\d+)*\s*$`)

// ParseByteSize converts a JSON memory value to bytes as pydantic's ByteSize does: an
// integer (int, int64, json.Number; a float is truncated; a bool is 0 or 1), a string
// holding an integer, or a string with a decimal or binary unit, case-insensitive
// ("10MB" = 10,000,000, "10MiB" = 10,485,760, "1.5 GB", "1k", "2G", "8bit" = 1). Values
// beyond int64 saturate (the caller's maximum then refuses them). Errors are *ParseError.
func ParseByteSize(v any) (int64, error) {
	switch x := v.(type) {
	case bool:
		if x {
			return 1, nil
		}
		return 0, nil
	case int:
		return int64(x), nil
	case int64:
		return x, nil
	case float64:
		return saturate(x), nil
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return i, nil
		}
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil && !isRangeErr(err) {
			return 0, byteSizeError()
		}
		return saturate(f), nil
	case string:
		return parseByteSizeString(x)
	}
	return 0, byteSizeError()
}

func parseByteSizeString(s string) (int64, error) {
	if pythonIntRE.MatchString(s) {
		digits := strings.ReplaceAll(strings.TrimSpace(s), "_", "")
		i, err := strconv.ParseInt(digits, 10, 64)
		if err != nil {
			if strings.HasPrefix(digits, "-") {
				return math.MinInt64, nil
			}
			return math.MaxInt64, nil
		}
		return i, nil
	}
	m := byteSizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, byteSizeError()
	}
	unit := m[2]
	if unit == "" {
		unit = "b"
	}
	mult, ok := byteUnits[strings.ToLower(unit)]
	if !ok {
		msg := "could not interpret byte unit: " + unit
		return 0, &ParseError{Type: "byte_size_unit", Msg: msg, Ctx: map[string]any{"unit": unit}}
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil && !isRangeErr(err) {
		return 0, byteSizeError()
	}
	return saturate(f * mult), nil
}

func byteSizeError() *ParseError {
	return &ParseError{Type: "byte_size", Msg: "could not parse value and unit from byte string"}
}

// saturate truncates f toward zero like Python's int(float), clamped to int64.
func saturate(f float64) int64 {
	switch {
	case math.IsNaN(f):
		return 0
	case f >= math.MaxInt64:
		return math.MaxInt64
	case f <= math.MinInt64:
		return math.MinInt64
	}
	return int64(f)
}
