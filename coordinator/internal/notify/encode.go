package notify

import (
	"fmt"
	"time"

	"github.com/kbase/cts/coordinator/internal/jobs"
)

// Encode returns the Kafka message value of transition t of job jobID, byte for byte what the
// Python service's json.dumps produced:
//
//	{"job_id": "id1", "state": "created", "time": "2024-03-24T12:00:00+00:00", "trans_id": "trans_id1"}
//
// (", " and ": " separators, this key order, ASCII-only strings, and the time as Python's
// isoformat of a UTC datetime).
func Encode(jobID string, t jobs.Transition) []byte {
	b := make([]byte, 0, 160)
	b = append(b, `{"job_id": `...)
	b = appendPyString(b, jobID)
	b = append(b, `, "state": `...)
	b = appendPyString(b, string(t.State))
	b = append(b, `, "time": `...)
	b = appendPyString(b, PyISOTime(t.Time))
	b = append(b, `, "trans_id": `...)
	b = appendPyString(b, t.TransID)
	return append(b, '}')
}

// PyISOTime formats t as Python's datetime.isoformat() of the same instant in UTC:
// "2025-04-02T12:00:00+00:00", with microseconds only when non-zero
// ("2025-04-02T12:00:00.345000+00:00"). Python datetimes have microsecond resolution, so
// nanoseconds are truncated.
func PyISOTime(t time.Time) string {
	t = t.UTC()
	s := t.Format("2006-01-02T15:04:05")
	if us := t.Nanosecond() / 1000; us != 0 {
		s += fmt.Sprintf(".%06d", us)
	}
	return s + "+00:00"
}

const hexDigits = "0123456789abcdef"

// appendPyString appends s as Python's json.dumps writes a str with ensure_ascii=True: '"'
// and '\' escaped, \n \r \t \b \f short, everything outside printable ASCII (space to '~') as
// lower-case \uXXXX, with surrogate pairs above U+FFFF. Invalid UTF-8 bytes (which a Python
// str cannot hold) become U+FFFD.
func appendPyString(b []byte, s string) []byte {
	b = append(b, '"')
	for _, r := range s {
		switch r {
		case '"':
			b = append(b, '\\', '"')
		case '\\':
			b = append(b, '\\', '\\')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		default:
			switch {
			case r >= 0x20 && r <= 0x7e:
				b = append(b, byte(r))
			case r > 0xffff:
				r -= 0x10000
				b = appendU(b, 0xd800|(r>>10)&0x3ff)
				b = appendU(b, 0xdc00|r&0x3ff)
			default:
				b = appendU(b, r)
			}
		}
	}
	return append(b, '"')
}

func appendU(b []byte, r rune) []byte {
	return append(b, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
}
