package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Refdata is the configuration of the agent's refdata mode (CTS_AGENT_MODE=refdata): the
// coordinator's staging task for one reference data object at one site. The coordinator sets
// REFDATA_ID, REFDATA_S3_PATH, REFDATA_CRC64NVME, REFDATA_UNPACK and REFDATA_CLUSTER; the
// site's worker environment gives the rest, as for jobs.
type Refdata struct {
	Worker
	ID        string
	S3Path    string
	CRC64NVME string
	Unpack    bool
	// Cluster is the site the staging reports for.
	Cluster string
	// HostPath is REFDATA_HOST_PATH, where published trees live.
	HostPath string
	// MaxBytes (REFDATA_MAX_BYTES) and MaxFiles (REFDATA_MAX_FILES) bound an unpack; 0 takes
	// the stager's defaults.
	MaxBytes int64
	MaxFiles int
}

// RefdataFromEnv reads the refdata mode's configuration with lookup and reads the secret
// files. Every problem is reported, joined.
func RefdataFromEnv(lookup func(string) (string, bool)) (Refdata, error) {
	get := func(k string) string { v, _ := lookup(k); return strings.TrimSpace(v) }
	var errs []error
	worker, workerErrs := workerFromEnv(get)
	c := Refdata{
		Worker: worker,
		ID:     get("REFDATA_ID"), S3Path: get("REFDATA_S3_PATH"), CRC64NVME: get("REFDATA_CRC64NVME"),
		Cluster: get("REFDATA_CLUSTER"), HostPath: get("REFDATA_HOST_PATH"),
	}
	for _, kv := range [][2]string{{"REFDATA_ID", c.ID}, {"REFDATA_S3_PATH", c.S3Path}, {"REFDATA_CRC64NVME", c.CRC64NVME},
		{"REFDATA_CLUSTER", c.Cluster}, {"REFDATA_HOST_PATH", c.HostPath}} {
		if kv[1] == "" {
			errs = append(errs, fmt.Errorf("%s is required", kv[0]))
		}
	}
	errs = append(errs, workerErrs...)
	if u := get("REFDATA_UNPACK"); u != "" {
		b, err := strconv.ParseBool(u)
		if err != nil {
			errs = append(errs, fmt.Errorf("REFDATA_UNPACK must be true or false, got %q", u))
		}
		c.Unpack = b
	}
	if v := get("REFDATA_MAX_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Errorf("REFDATA_MAX_BYTES must be a whole number > 0, got %q", v))
		}
		c.MaxBytes = n
	}
	if v := get("REFDATA_MAX_FILES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Errorf("REFDATA_MAX_FILES must be a whole number > 0, got %q", v))
		}
		c.MaxFiles = n
	}
	errs = append(errs, c.readSecrets()...)
	return c, errors.Join(errs...)
}
