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

	ServiceURL   string
	TokenPath    string
	Token        string `json:"-"`
	S3URL        string
	S3AccessKey  string
	S3SecretPath string
	S3Secret     string `json:"-"`
	S3Region     string
	S3Insecure   bool
	LogLevel     string
}

// RefdataFromEnv reads the refdata mode's configuration with lookup and reads the secret
// files. Every problem is reported, joined.
func RefdataFromEnv(lookup func(string) (string, bool)) (Refdata, error) {
	get := func(k string) string { v, _ := lookup(k); return strings.TrimSpace(v) }
	var errs []error
	c := Refdata{
		ID: get("REFDATA_ID"), S3Path: get("REFDATA_S3_PATH"), CRC64NVME: get("REFDATA_CRC64NVME"),
		Cluster: get("REFDATA_CLUSTER"), HostPath: get("REFDATA_HOST_PATH"),
		ServiceURL: get("SERVICE_ROOT_URL"), TokenPath: get("TOKEN_PATH"), S3URL: get("S3_URL"),
		S3AccessKey: get("S3_ACCESS_KEY"), S3SecretPath: get("S3_SECRET_PATH"), S3Region: get("S3_REGION"),
		S3Insecure: strings.EqualFold(get("S3_INSECURE"), "true"), LogLevel: get("CTS_LOG_LEVEL"),
	}
	for _, kv := range [][2]string{{"REFDATA_ID", c.ID}, {"REFDATA_S3_PATH", c.S3Path}, {"REFDATA_CRC64NVME", c.CRC64NVME},
		{"REFDATA_CLUSTER", c.Cluster}, {"REFDATA_HOST_PATH", c.HostPath}, {"SERVICE_ROOT_URL", c.ServiceURL},
		{"TOKEN_PATH", c.TokenPath}, {"S3_URL", c.S3URL}, {"S3_ACCESS_KEY", c.S3AccessKey}, {"S3_SECRET_PATH", c.S3SecretPath}} {
		if kv[1] == "" {
			errs = append(errs, fmt.Errorf("%s is required", kv[0]))
		}
	}
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
	if c.S3Region == "" {
		c.S3Region = "us-east-1"
	}
	var err error
	if c.TokenPath != "" {
		if c.Token, err = readSecret(c.TokenPath); err != nil {
			errs = append(errs, fmt.Errorf("read token: %w", err))
		}
	}
	if c.S3SecretPath != "" {
		if c.S3Secret, err = readSecret(c.S3SecretPath); err != nil {
			errs = append(errs, fmt.Errorf("read S3 secret: %w", err))
		}
	}
	return c, errors.Join(errs...)
}
