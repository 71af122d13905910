package jobinput

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ParseError is a value that cannot be converted, with the pydantic error type and message
// the API reports for it.
type ParseError struct {
	Type string
	Msg  string
	Ctx  map[string]any
}

// Error returns Msg.
func (e *ParseError) Error() string { return e.Msg }

const (
	microsPerSecond = 1_000_000
	microsPerDay    = 86_400 * microsPerSecond
	// maxDays is the largest duration Python's timedelta (and pydantic) accepts.
	maxDays = 999_999_999
)

func durationError(reason string) *ParseError {
	return &ParseError{Type: "time_delta_parsing", Msg: "Input should be a valid timedelta, " + reason,
		Ctx: map[string]any{"error": reason}}
}

// ParseDuration converts a JSON runtime to seconds, as pydantic's timedelta does: an integer
// or float number of seconds (int, int64, float64 or json.Number), or a string that is an
// ISO 8601 duration ("PT12H30M5S", "P1D", "P3DT5S", "PT1.5S", also Y = 365 days, M before T
// = 30 days, W = 7 days, a fraction on the last component, an optional sign),
// "[-]HH:MM[:SS[.ffffff]]", or "D days[,] HH:MM:SS" / "Dd". The result is rounded to whole
// microseconds. Errors are *ParseError.
func ParseDuration(v any) (float64, error) {
	var secs float64
	switch x := v.(type) {
	case int:
		secs = float64(x)
	case int64:
		secs = float64(x)
	case float64:
		secs = x
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil && !isRangeErr(err) {
			return 0, durationError("invalid number")
		}
		secs = f
	case string:
		return parseDurationString(x)
	default:
		return 0, &ParseError{Type: "time_delta_type", Msg: "Input should be a valid timedelta"}
	}
	if math.IsNaN(secs) || math.Abs(secs) >= (maxDays+1)*86_400 {
		return 0, durationError("durations may not exceed 999,999,999 days")
	}
	return math.RoundToEven(secs*microsPerSecond) / microsPerSecond, nil
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// dur is a non-negative duration being parsed: whole days plus microseconds within a day.
type dur struct{ days, micros int64 }

func (d *dur) norm() {
	d.days += d.micros / microsPerDay
	d.micros %= microsPerDay
}

func (d *dur) addSeconds(s int64) {
	d.days += s / 86_400
	d.micros += s % 86_400 * microsPerSecond
	d.norm()
}

func (d *dur) addMicros(us int64) {
	d.micros += us
	d.norm()
}

func (d dur) seconds() float64 {
	return float64(d.days)*86_400 + float64(d.micros)/microsPerSecond
}

// maxWhole bounds one number of a duration string: beyond it every unit exceeds maxDays,
// and below it no product overflows int64.
const maxWhole = 1_000_000_000_000_000

func tooLarge() *ParseError { return durationError("durations may not exceed 999,999,999 days") }

// parseDurationString follows speedate's Duration::parse_bytes; it returns seconds.
func parseDurationString(s string) (float64, error) {
	neg := false
	rest := s
	if rest == "" {
		return 0, durationError("input is too short")
	}
	switch rest[0] {
	case '+':
		rest = rest[1:]
	case '-':
		neg = true
		rest = rest[1:]
	}
	var d dur
	var err error
	switch {
	case strings.HasPrefix(rest, "P"):
		d, err = parseISODuration(rest[1:])
	case strings.ContainsAny(s, "dD") || len(s) < 5:
		d, err = parseDaysTime(rest)
	default:
		var us int64
		us, err = parseClock(rest)
		d.addMicros(us)
	}
	if err != nil {
		return 0, err
	}
	if d.days > maxDays {
		return 0, tooLarge()
	}
	if neg {
		return -d.seconds(), nil
	}
	return d.seconds(), nil
}

// parseISODuration parses the part after 'P'.
func parseISODuration(s string) (dur, error) {
	var d dur
	if s == "" || s == "T" {
		return d, durationError("input is too short")
	}
	gotT, lastFraction := false, false
	for i := 0; i < len(s); {
		if s[i] == 'T' {
			if gotT {
				return d, durationError("repeated T in duration")
			}
			gotT = true
			i++
			continue
		}
		if lastFraction {
			return d, durationError("only the last duration component may have a fraction")
		}
		whole, frac, n, err := parseNumberFrac(s[i:])
		if err != nil {
			return d, err
		}
		i += n
		if i >= len(s) {
			return d, durationError("duration component without a unit")
		}
		var seconds int64 // the unit in seconds (time part) ...
		var days int64    // ... or in days (date part)
		switch u := s[i]; {
		case gotT && u == 'H':
			seconds = 3600
		case gotT && u == 'M':
			seconds = 60
		case gotT && u == 'S':
			seconds = 1
		case !gotT && u == 'Y':
			days = 365
		case !gotT && u == 'M':
			days = 30
		case !gotT && u == 'W':
			days = 7
		case !gotT && u == 'D':
			days = 1
		case gotT:
			return d, durationError("expected H, M or S after T in duration")
		default:
			return d, durationError("expected Y, M, W or D in duration")
		}
		i++
		var f float64
		if frac != "" {
			lastFraction = true
			f, _ = strconv.ParseFloat("0."+frac, 64)
		}
		if seconds != 0 {
			d.addSeconds(whole * seconds)
			d.addMicros(int64(math.Round(f * float64(seconds) * microsPerSecond)))
		} else {
			d.days += whole * days
			d.addMicros(int64(math.Round(f * float64(days) * microsPerDay)))
		}
		if d.days > maxDays {
			return d, tooLarge()
		}
	}
	return d, nil
}

// parseNumberFrac reads digits with an optional '.' or ',' fraction; it returns the whole
// part, the fraction digits and the bytes read.
func parseNumberFrac(s string) (whole int64, frac string, n int, err error) {
	for n < len(s) && isDigit(s[n]) {
		whole = whole*10 + int64(s[n]-'0')
		if whole > maxWhole {
			return 0, "", 0, tooLarge()
		}
		n++
	}
	if n == 0 {
		return 0, "", 0, durationError("invalid digit in duration")
	}
	if n < len(s) && (s[n] == '.' || s[n] == ',') {
		start := n + 1
		n = start
		for n < len(s) && isDigit(s[n]) {
			n++
		}
		if n == start {
			return 0, "", 0, durationError("invalid digit in duration")
		}
		frac = s[start:n]
	}
	return whole, frac, n, nil
}

// parseDaysTime parses "D days, HH:MM:SS", "Dd", "D day" and the like.
func parseDaysTime(s string) (dur, error) {
	var d dur
	n := 0
	for n < len(s) && isDigit(s[n]) {
		d.days = d.days*10 + int64(s[n]-'0')
		if d.days > maxDays {
			return d, tooLarge()
		}
		n++
	}
	if n == 0 {
		return d, durationError("invalid digit in duration")
	}
	rest := strings.TrimPrefix(s[n:], " ")
	if rest == "" || (rest[0] != 'd' && rest[0] != 'D') {
		return d, durationError("invalid days in duration")
	}
	rest = rest[1:]
	if len(rest) >= 2 && strings.EqualFold(rest[:2], "ay") {
		rest = rest[2:]
		if len(rest) > 0 && (rest[0] == 's' || rest[0] == 'S') {
			rest = rest[1:]
		}
	} else if len(rest) > 0 && (rest[0] == 'a' || rest[0] == 'A') {
		return d, durationError("invalid days in duration")
	}
	rest = strings.TrimPrefix(rest, ",")
	rest = strings.TrimPrefix(rest, " ")
	if rest == "" {
		return d, nil
	}
	us, err := parseClock(rest)
	if err != nil {
		return d, err
	}
	d.addMicros(us)
	return d, nil
}

// parseClock parses "HH:MM[:SS[.ffffff]]" (hours 0–23) into microseconds.
func parseClock(s string) (int64, error) {
	bad := durationError("invalid time format in duration")
	two := func(i int, max int64) (int64, bool) {
		if i+2 > len(s) || !isDigit(s[i]) || !isDigit(s[i+1]) {
			return 0, false
		}
		v := int64(s[i]-'0')*10 + int64(s[i+1]-'0')
		return v, v <= max
	}
	h, ok := two(0, 23)
	if !ok || len(s) < 3 || s[2] != ':' {
		return 0, bad
	}
	m, ok := two(3, 59)
	if !ok {
		return 0, bad
	}
	us := (h*3600 + m*60) * microsPerSecond
	i := 5
	if i == len(s) {
		return us, nil
	}
	if s[i] != ':' {
		return 0, bad
	}
	sec, ok := two(i+1, 59)
	if !ok {
		return 0, bad
	}
	us += sec * microsPerSecond
	i += 3
	if i < len(s) && (s[i] == '.' || s[i] == ',') {
		start := i + 1
		i = start
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		digits := s[start:i]
		if digits == "" || len(digits) > 9 {
			return 0, bad
		}
		f, _ := strconv.ParseInt((digits + "000000")[:6], 10, 64)
		us += f
	}
	if i != len(s) {
		return 0, durationError("unexpected extra characters at the end of the input")
	}
	return us, nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// FormatDuration renders seconds as pydantic renders a timedelta in JSON: an ISO 8601
// duration with only the non-zero parts, days of 365 or more as years, and seconds with up
// to six fraction digits: 60 → "PT1M", 90061.5 → "P1DT1H1M1.5S", 259205 → "P3DT5S",
// 0 → "PT0S".
func FormatDuration(seconds float64) string {
	if math.IsNaN(seconds) || math.IsInf(seconds, 0) {
		return "PT0S"
	}
	var b strings.Builder
	us := math.RoundToEven(math.Abs(seconds) * microsPerSecond)
	if seconds < 0 && us > 0 {
		b.WriteByte('-')
	}
	day := int64(math.Floor(us / microsPerDay))
	if day > maxDays {
		day, us = maxDays, float64(maxDays)*microsPerDay
	}
	within := int64(us - float64(day)*microsPerDay)
	if within < 0 { // float rounding at a day boundary
		within = 0
	}
	sec, micro := within/microsPerSecond, within%microsPerSecond
	b.WriteByte('P')
	if y := day / 365; y != 0 {
		fmt.Fprintf(&b, "%dY", y)
	}
	if d := day % 365; d != 0 {
		fmt.Fprintf(&b, "%dD", d)
	}
	if sec != 0 || micro != 0 {
		b.WriteByte('T')
		if h := sec / 3600; h != 0 {
			fmt.Fprintf(&b, "%dH", h)
		}
		if m := sec % 3600 / 60; m != 0 {
			fmt.Fprintf(&b, "%dM", m)
		}
		if s := sec % 60; s != 0 || micro != 0 {
			fmt.Fprintf(&b, "%d", s)
			if micro != 0 {
				b.WriteString("." + strings.TrimRight(fmt.Sprintf("%06d", micro), "0"))
			}
			b.WriteByte('S')
		}
	}
	if day == 0 && sec == 0 && micro == 0 {
		b.WriteString("T0S")
	}
	return b.String()
}
