// Package jobinput owns the CTS JobInput (the body of POST /jobs): its strict
// JSON decoding (unknown keys refused), its validation with pydantic-shaped details, its
// normalisation, the split of input files across containers (§3.3) and their placement in the
// container (§3.4). It performs no I/O: S3 and image checks belong to the jobs service.
package jobinput

import "github.com/kbase/cts/shared/args"

// InputFile is one input: an S3 path with its CRC64/NVME and an optional data ID.
// Submitted plain strings are normalised into this form (CRC64NVME filled in at submit).
type InputFile struct {
	File      string `json:"file"`
	CRC64NVME string `json:"crc64nvme,omitempty"`
	DataID    string `json:"data_id,omitempty"`
}

// JobInput is a validated, normalised job submission. Runtime is in seconds, Memory in bytes.
type JobInput struct {
	Cluster       string          `json:"cluster"`
	Image         string          `json:"image"`
	Params        args.Parameters `json:"params"`
	NumContainers int             `json:"num_containers"`
	CPUs          int             `json:"cpus"`
	Memory        int64           `json:"memory"`
	// RuntimeSeconds is the job's runtime; rendered in the API as an ISO 8601 duration.
	RuntimeSeconds float64     `json:"runtime"`
	InputRoots     []string    `json:"input_roots,omitempty"`
	OutputDir      string      `json:"output_dir"`
	InputFiles     []InputFile `json:"input_files,omitempty"`
}
