package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRefdataFromEnv(t *testing.T) {
	dir := t.TempDir()
	tok, sec := filepath.Join(dir, "tok"), filepath.Join(dir, "sec")
	for _, f := range []string{tok, sec} {
		if err := os.WriteFile(f, []byte(" secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	full := map[string]string{"REFDATA_ID": "r1", "REFDATA_S3_PATH": "b/k.tar.gz", "REFDATA_CRC64NVME": "AAAAAAAAAAA=",
		"REFDATA_UNPACK": "true", "REFDATA_CLUSTER": "kbase", "REFDATA_HOST_PATH": "/refdata",
		"SERVICE_ROOT_URL": "http://cts", "TOKEN_PATH": tok, "S3_URL": "http://s3", "S3_ACCESS_KEY": "ak",
		"S3_SECRET_PATH": sec, "REFDATA_MAX_BYTES": "1000", "REFDATA_MAX_FILES": "10"}
	lookup := func(m map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	c, err := RefdataFromEnv(lookup(full))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Unpack || c.Token != "secret" || c.S3Secret != "secret" || c.MaxBytes != 1000 || c.MaxFiles != 10 ||
		c.Cluster != "kbase" || c.S3Region != "us-east-1" {
		t.Fatalf("config %+v", c)
	}
	for name, c := range map[string]struct {
		key, val, want string
	}{
		"missing id":      {"REFDATA_ID", "", "REFDATA_ID is required"},
		"missing cluster": {"REFDATA_CLUSTER", "", "REFDATA_CLUSTER is required"},
		"bad unpack":      {"REFDATA_UNPACK", "yes please", "REFDATA_UNPACK"},
		"bad attempt":     {"REFDATA_ATTEMPT", "-1", "REFDATA_ATTEMPT"},
		"bad max bytes":   {"REFDATA_MAX_BYTES", "-1", "REFDATA_MAX_BYTES"},
		"missing token":   {"TOKEN_PATH", filepath.Join(dir, "none"), "read token"},
	} {
		t.Run(name, func(t *testing.T) {
			m := map[string]string{}
			for k, v := range full {
				m[k] = v
			}
			m[c.key] = c.val
			_, err := RefdataFromEnv(lookup(m))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}
