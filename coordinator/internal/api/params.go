package api

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/images"
	"github.com/kbase/cts/coordinator/internal/jobinput"
	"github.com/kbase/cts/shared/job"
)

// params reads and validates path and query parameters the way FastAPI does: every problem is
// collected, and err returns them all as one 400 / 30010 with pydantic-shaped details.
type params struct {
	r       *http.Request
	details []ctserr.ValidationDetail
}

func newParams(r *http.Request) *params { return &params{r: r} }

func (p *params) bad(loc, name, typ, msg string, input any, ctx map[string]any) {
	p.details = append(p.details, ctserr.ValidationDetail{Type: typ, Loc: []any{loc, name}, Msg: msg, Input: input, Ctx: ctx})
}

// err returns the collected problems, or nil.
func (p *params) err() error {
	if len(p.details) == 0 {
		return nil
	}
	return ctserr.Validation(p.details...)
}

// raw returns a parameter's value and whether it was given ("path" or "query").
func (p *params) raw(loc, name string) (string, bool) {
	if loc == "path" {
		return p.r.PathValue(name), true
	}
	q := p.r.URL.Query()
	if _, ok := q[name]; !ok {
		return "", false
	}
	return q.Get(name), true
}

// idPattern is the CTS ^[\w-]+$ for job and refdata IDs (Python's \w is Unicode-aware).
var idPattern = regexp.MustCompile(`^[\p{L}\p{M}\p{Nd}\p{Pc}-]+$`)

// pattern validates a string parameter against re (shown as display) and a length range.
func (p *params) pattern(loc, name string, re *regexp.Regexp, display string, minLen, maxLen int) string {
	v, ok := p.raw(loc, name)
	if !ok {
		return ""
	}
	n := utf8.RuneCountInString(v)
	switch {
	case n < minLen:
		p.bad(loc, name, "string_too_short", fmt.Sprintf("String should have at least %d character%s", minLen, plural(minLen)), v, map[string]any{"min_length": minLen})
	case n > maxLen:
		p.bad(loc, name, "string_too_long", fmt.Sprintf("String should have at most %d character%s", maxLen, plural(maxLen)), v, map[string]any{"max_length": maxLen})
	case !re.MatchString(v):
		p.bad(loc, name, "string_pattern_mismatch", fmt.Sprintf("String should match pattern '%s'", display), v, map[string]any{"pattern": display})
	default:
		return v
	}
	return ""
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// jobID is the job_id path parameter.
func (p *params) jobID() string {
	return p.pattern("path", "job_id", idPattern, `^[\w-]+$`, 1, 50)
}

// integer reads an integer parameter with bounds (max < 0: none); def when absent.
func (p *params) integer(loc, name string, def, minV, maxV int) int {
	v, ok := p.raw(loc, name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		p.bad(loc, name, "int_parsing", "Input should be a valid integer, unable to parse string as an integer", v, nil)
		return def
	}
	if n < minV {
		p.bad(loc, name, "greater_than_equal", fmt.Sprintf("Input should be greater than or equal to %d", minV), v, map[string]any{"ge": minV})
		return def
	}
	if maxV >= 0 && n > maxV {
		p.bad(loc, name, "less_than_equal", fmt.Sprintf("Input should be less than or equal to %d", maxV), v, map[string]any{"le": maxV})
		return def
	}
	return n
}

// boolean reads a boolean query parameter as pydantic does.
func (p *params) boolean(name string, def bool) bool {
	v, ok := p.raw("query", name)
	if !ok {
		return def
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "on", "t", "true", "y", "yes":
		return true
	case "0", "off", "f", "false", "n", "no":
		return false
	}
	p.bad("query", name, "bool_parsing", "Input should be a valid boolean, unable to interpret input", v, nil)
	return def
}

// enum reads a parameter that must be one of allowed; required makes an absent one an error.
func (p *params) enum(loc, name string, allowed []string, required bool) string {
	v, ok := p.raw(loc, name)
	if !ok {
		if required {
			p.details = append(p.details, ctserr.ValidationDetail{Type: "missing", Loc: []any{loc, name}, Msg: "Field required", Input: nil})
		}
		return ""
	}
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	exp := enumText(allowed)
	p.bad(loc, name, "enum", "Input should be "+exp, v, map[string]any{"expected": exp})
	return ""
}

// enumText renders allowed values as pydantic does: "'a', 'b' or 'c'".
func enumText(allowed []string) string {
	q := make([]string, len(allowed))
	for i, a := range allowed {
		q[i] = "'" + a + "'"
	}
	if len(q) <= 1 {
		return strings.Join(q, "")
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

func stateNames() []string {
	out := make([]string, len(job.States))
	for i, s := range job.States {
		out[i] = string(s)
	}
	return out
}

// state reads a job state parameter.
func (p *params) state(name string, required bool) job.State {
	return job.State(p.enum("query", name, stateNames(), required))
}

// datetime reads a timezone-aware ISO 8601 datetime (or Unix seconds) query parameter; a naive
// one is refused, as pydantic's AwareDatetime does.
func (p *params) datetime(name string) time.Time {
	v, ok := p.raw("query", name)
	if !ok {
		return time.Time{}
	}
	t, typ, msg := parseAwareTime(strings.TrimSpace(v))
	if typ != "" {
		p.bad("query", name, typ, msg, v, nil)
		return time.Time{}
	}
	return t
}

func parseAwareTime(v string) (time.Time, string, string) {
	if f, err := strconv.ParseFloat(v, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
		if math.Abs(f) > 2e10 { // pydantic: larger numbers are milliseconds
			f /= 1000
		}
		if math.Abs(f) > 1e11 {
			return time.Time{}, "datetime_parsing", "Input should be a valid datetime, dates after 9999 are not supported as unix timestamps"
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC(), "", ""
	}
	s := v
	if len(s) > 10 && (s[10] == ' ' || s[10] == 't') {
		s = s[:10] + "T" + s[11:]
	}
	if strings.HasSuffix(s, "z") {
		s = s[:len(s)-1] + "Z"
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, "", ""
	}
	for _, layout := range []string{"2006-01-02T15:04:05.999999999", "2006-01-02T15:04", "2006-01-02"} {
		if _, err := time.Parse(layout, s); err == nil {
			return time.Time{}, "timezone_aware", "Input should have timezone info"
		}
	}
	return time.Time{}, "datetime_parsing", "Input should be a valid datetime, invalid datetime format"
}

// image reads an image reference query parameter (name, name:tag or name@sha256:...) and
// returns its normalised name, tag and digest; a reference that does not parse is a
// validation problem with the image parser's message.
func (p *params) image(name string) (imageName, tag, digest string) {
	v, ok := p.raw("query", name)
	if !ok {
		return "", "", ""
	}
	if utf8.RuneCountInString(v) > 1000 {
		p.bad("query", name, "string_too_long", "String should have at most 1000 characters", v, map[string]any{"max_length": 1000})
		return "", "", ""
	}
	ref, err := images.ParseRef(v)
	if err != nil {
		p.bad("query", name, "value_error", "Value error, "+err.Error(), v, nil)
		return "", "", ""
	}
	return ref.Name, ref.Tag, ref.Digest
}

// duration reads an ISO 8601 / seconds duration query parameter of at least minSec seconds.
func (p *params) duration(name string, def, minSec float64) float64 {
	v, ok := p.raw("query", name)
	if !ok {
		return def
	}
	var in any = v
	if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
		in = f
	}
	secs, err := jobinput.ParseDuration(in)
	if err != nil {
		var pe *jobinput.ParseError
		if errors.As(err, &pe) {
			p.bad("query", name, pe.Type, pe.Msg, v, pe.Ctx)
		} else {
			p.bad("query", name, "time_delta_parsing", "Input should be a valid timedelta", v, nil)
		}
		return def
	}
	if secs < minSec {
		lim := jobinput.FormatDuration(minSec)
		p.bad("query", name, "greater_than_equal", "Input should be greater than or equal to "+lim, v, map[string]any{"ge": lim})
		return def
	}
	return secs
}
