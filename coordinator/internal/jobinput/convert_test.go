package jobinput

import (
	"encoding/json"
	"errors"
	"math"
	"testing"
)

func TestFormatDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   float64
		want string
	}{
		{60, "PT1M"},
		{90061.5, "P1DT1H1M1.5S"},
		{259205, "P3DT5S"},
		{0, "PT0S"},
		{1, "PT1S"},
		{3600, "PT1H"},
		{86400, "P1D"},
		{10065 * 60, "P6DT23H45M"},
		{0.000001, "PT0.000001S"},
		{1.25, "PT1.25S"},
		{365 * 86400, "P1Y"},
		{400*86400 + 7, "P1Y35DT7S"},
		{-1, "-PT1S"},
		{-0.0000001, "PT0S"},
		{0.1 + 0.2, "PT0.3S"},
	}
	for _, tc := range tests {
		if got := FormatDuration(tc.in); got != tc.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      any
		want    float64
		wantErr string // the error type
	}{
		{json.Number("60"), 60, ""},
		{json.Number("1.5"), 1.5, ""},
		{json.Number("1e2"), 100, ""},
		{90, 90, ""},
		{2.5, 2.5, ""},
		{"PT12H30M5S", 45005, ""},
		{"P1D", 86400, ""},
		{"P3DT5S", 259205, ""},
		{"PT1.5S", 1.5, ""},
		{"PT0,5S", 0.5, ""},
		{"PT60S", 60, ""},
		{"PT600S", 600, ""},
		{"P1W", 7 * 86400, ""},
		{"P1M", 30 * 86400, ""},
		{"P1Y", 365 * 86400, ""},
		{"P0.5D", 43200, ""},
		{"PT1.5H", 5400, ""},
		{"P1DT", 86400, ""},
		{"+PT1S", 1, ""},
		{"-PT1S", -1, ""},
		{"01:02:03", 3723, ""},
		{"01:02", 3720, ""},
		{"00:00:01.5", 1.5, ""},
		{"1 day, 01:00:00", 90000, ""},
		{"2 days", 172800, ""},
		{"3d", 259200, ""},
		{"1d01:00:00", 90000, ""},
		{"P", 0, "time_delta_parsing"},
		{"PT", 0, "time_delta_parsing"},
		{"P1.5DT1H", 0, "time_delta_parsing"},
		{"PT1H1", 0, "time_delta_parsing"},
		{"P1H", 0, "time_delta_parsing"},
		{"PTT1S", 0, "time_delta_parsing"},
		{"PT1S ", 0, "time_delta_parsing"},
		{"60", 0, "time_delta_parsing"},
		{"24:00:00", 0, "time_delta_parsing"},
		{"01:60:00", 0, "time_delta_parsing"},
		{"01:00:00x", 0, "time_delta_parsing"},
		{"", 0, "time_delta_parsing"},
		{"P1000000000D", 0, "time_delta_parsing"},
		{"PT99999999999999999999S", 0, "time_delta_parsing"},
		{json.Number("1e300"), 0, "time_delta_parsing"},
		{true, 0, "time_delta_type"},
		{nil, 0, "time_delta_type"},
		{[]any{}, 0, "time_delta_type"},
	}
	for _, tc := range tests {
		got, err := ParseDuration(tc.in)
		if tc.wantErr != "" {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Type != tc.wantErr {
				t.Errorf("ParseDuration(%#v) = %v, %v; want a %s error", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseDuration(%#v) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestDurationRoundTrip(t *testing.T) {
	t.Parallel()
	for _, s := range []float64{1, 59.999999, 60, 86399.5, 90061.5, 259205, 10065 * 60, 123456.789012} {
		got, err := ParseDuration(FormatDuration(s))
		if err != nil || got != s {
			t.Errorf("ParseDuration(FormatDuration(%v) = %q) = %v, %v", s, FormatDuration(s), got, err)
		}
	}
}

func TestParseByteSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      any
		want    int64
		wantErr string
	}{
		{"10MB", 10_000_000, ""},
		{"10MiB", 10_485_760, ""},
		{"1gb", 1_000_000_000, ""},
		{"1.5 GB", 1_500_000_000, ""},
		{"1k", 1000, ""},
		{"2G", 2_000_000_000, ""},
		{"1KiB", 1024, ""},
		{"16bit", 2, ""},
		{"1kbit", 125, ""},
		{".5kb", 500, ""},
		{"100", 100, ""},
		{" 1_000 ", 1000, ""},
		{"-5", -5, ""},
		{"1.9", 1, ""},
		{"0.1kb", 100, ""},
		{"7b", 7, ""},
		{json.Number("10000000"), 10_000_000, ""},
		{json.Number("1.5e9"), 1_500_000_000, ""},
		{json.Number("1e30"), math.MaxInt64, ""},
		{"99999999999999999999999", math.MaxInt64, ""},
		{"1e30", 0, "byte_size_unit"},
		{int64(42), 42, ""},
		{true, 1, ""},
		{2.9, 2, ""},
		{"10 zb", 0, "byte_size_unit"},
		{"MB", 0, "byte_size"},
		{"-5MB", 0, "byte_size"},
		{"10MB extra", 0, "byte_size"},
		{"", 0, "byte_size"},
		{nil, 0, "byte_size"},
		{[]any{}, 0, "byte_size"},
	}
	for _, tc := range tests {
		got, err := ParseByteSize(tc.in)
		if tc.wantErr != "" {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Type != tc.wantErr {
				t.Errorf("ParseByteSize(%#v) = %v, %v; want a %s error", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseByteSize(%#v) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}
