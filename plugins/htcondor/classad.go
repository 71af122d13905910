package htcondor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// The launcher's reader of condor_q -json and condor_history -json output. It shares no code
// with test/minicondor's ClassAd codec on purpose (a misreading of the format cannot hide by
// being the same on both sides); both are tested against the real output in testdata/real.
//
// What the format holds (HTCondor's ClassAdJsonUnParser): a JSON array of objects, nothing at
// all when no ad matched; integers, reals (always with "." or an exponent), strings, booleans,
// null for undefined; and every expression that is not a literal as the string
// "\/Expr(<text>)\/", which JSON decodes to "/Expr(<text>)/". A real job ad holds such
// expressions even for attributes that read like numbers: MemoryUsage is
// ((ResidentSetSize + 1023) / 1024).

// ad is one ClassAd. ClassAd attribute names are case-insensitive: lookups fold case.
type ad struct {
	attrs map[string]any // as printed, for Details
	fold  map[string]any // lower-cased name → value
}

// parseAds reads the tools' -json output.
func parseAds(out []byte) ([]ad, error) {
	if len(bytes.TrimSpace(out)) == 0 {
		return nil, nil // nothing matched: the tools print nothing at all
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.UseNumber()
	var raw []map[string]any
	if err := dec.Decode(&raw); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("data after the array of ads")
	}
	ads := make([]ad, len(raw))
	for i, m := range raw {
		ads[i] = newAd(m)
	}
	return ads, nil
}

func newAd(attrs map[string]any) ad {
	fold := make(map[string]any, len(attrs))
	for k, v := range attrs {
		fold[strings.ToLower(k)] = v
	}
	return ad{attrs: attrs, fold: fold}
}

func (a ad) get(name string) any { return a.fold[strings.ToLower(name)] }

// expression reports whether attribute name is an expression (which the launcher does not
// evaluate), with its text.
func (a ad) expression(name string) (string, bool) {
	s, ok := a.get(name).(string)
	if ok && len(s) >= len("/Expr()/") && strings.HasPrefix(s, "/Expr(") && strings.HasSuffix(s, ")/") {
		return s[len("/Expr(") : len(s)-len(")/")], true
	}
	return "", false
}

// int is the attribute's integer value (a real is truncated).
func (a ad) int(name string) (int64, bool) {
	n, ok := a.get(name).(json.Number)
	if !ok {
		return 0, false
	}
	if i, err := n.Int64(); err == nil {
		return i, true
	}
	if f, err := n.Float64(); err == nil {
		return int64(f), true
	}
	return 0, false
}

func (a ad) float(name string) (float64, bool) {
	n, ok := a.get(name).(json.Number)
	if !ok {
		return 0, false
	}
	f, err := n.Float64()
	return f, err == nil
}

// str is the attribute's string value: "" when absent, not a string, or an expression.
func (a ad) str(name string) string {
	if _, isExpr := a.expression(name); isExpr {
		return ""
	}
	s, _ := a.get(name).(string)
	return s
}

func (a ad) boolean(name string) bool {
	b, _ := a.get(name).(bool)
	return b
}

// memoryMiB is the proc's peak memory in MiB. MemoryUsage is a number only where a site made it
// one; condor_submit defines it as ((ResidentSetSize + 1023) / 1024), which the launcher
// computes itself from ResidentSetSize (KiB), as HTCondor would, integer division included.
func (a ad) memoryMiB() (float64, bool) {
	if m, ok := a.float("MemoryUsage"); ok {
		return m, true
	}
	if rss, ok := a.int("ResidentSetSize"); ok {
		return float64((rss + 1023) / 1024), true
	}
	return 0, false
}

// wallSeconds is the proc's wall-clock time: CommittedTime once a run completed (it leaves out
// runs that were evicted, and is 0 until then), else RemoteWallClockTime (every run so far).
func (a ad) wallSeconds() (float64, bool) {
	if c, ok := a.float("CommittedTime"); ok && c > 0 {
		return c, true
	}
	return a.float("RemoteWallClockTime")
}
