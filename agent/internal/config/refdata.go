package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/kbase/cts/shared/staging"
)

// Refdata is the configuration of the agent's refdata mode (CTS_AGENT_MODE=refdata): the
// coordinator's staging task for one reference data object at one site. The coordinator sets
// the shared/staging variables (REFDATA_ID, REFDATA_S3_PATH, REFDATA_CRC64NVME,
// REFDATA_UNPACK, REFDATA_CLUSTER, REFDATA_ATTEMPT); the site's worker environment gives the
// rest, as for jobs.
type Refdata struct {
	Worker
	ID        string
	S3Path    string
	CRC64NVME string
	Unpack    bool
	// Cluster is the site the staging reports for.
	Cluster string
	// Attempt is the coordinator's attempt number of this staging task, carried back in every
	// report (nil: not given, not sent).
	Attempt *int
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
		ID:     get(staging.EnvID), S3Path: get(staging.EnvS3Path), CRC64NVME: get(staging.EnvCRC64NVME),
		Cluster: get(staging.EnvCluster), HostPath: get("REFDATA_HOST_PATH"),
	}
	for _, kv := range [][2]string{{staging.EnvID, c.ID}, {staging.EnvS3Path, c.S3Path}, {staging.EnvCRC64NVME, c.CRC64NVME},
		{staging.EnvCluster, c.Cluster}, {"REFDATA_HOST_PATH", c.HostPath}} {
		if kv[1] == "" {
			errs = append(errs, fmt.Errorf("%s is required", kv[0]))
		}
	}
	errs = append(errs, workerErrs...)
	if u := get(staging.EnvUnpack); u != "" {
		b, err := strconv.ParseBool(u)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s must be true or false, got %q", staging.EnvUnpack, u))
		}
		c.Unpack = b
	}
	if v := get(staging.EnvAttempt); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("%s must be a whole number ≥ 0, got %q", staging.EnvAttempt, v))
		}
		c.Attempt = &n
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
