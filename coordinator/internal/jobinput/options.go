package jobinput

// Options are the limits Decode enforces. They are the model-level maxima of the Python service
// (the largest site); per-site limits are checked by the jobs service afterwards.
type Options struct {
	// Sites are the allowed cluster names, in the order error messages list them.
	Sites []string
	// MaxCPUs bounds cpus.
	MaxCPUs int
	// MaxMemory bounds memory, in bytes.
	MaxMemory int64
	// MaxRuntimeSeconds bounds runtime.
	MaxRuntimeSeconds float64
	// MaxInputFiles bounds the number of input files.
	MaxInputFiles int
	// MaxContainers bounds num_containers.
	MaxContainers int
}

// Defaults of a job input.
const (
	DefaultNumContainers  = 1
	DefaultCPUs           = 1
	DefaultMemory         = 10_000_000
	DefaultRuntimeSeconds = 60
	// MinMemory is the smallest memory a job may ask for, in bytes.
	MinMemory = 1_000_000
	// MinRuntimeSeconds is the shortest runtime a job may ask for.
	MinRuntimeSeconds = 1
)

// Lengths of the string fields.
const (
	MaxImageLength   = 1000
	MinS3PathLength  = 5
	MaxS3PathLength  = 1088
	CRC64NVMELength  = 12
	MaxDataIDLength  = 255
	defaultSiteKBase = "kbase"
)

// DefaultOptions returns the limits of the Python service with the kbase site only.
func DefaultOptions() Options {
	return Options{
		Sites:             []string{defaultSiteKBase},
		MaxCPUs:           256,
		MaxMemory:         990_000_000_000,
		MaxRuntimeSeconds: 10065 * 60,
		MaxInputFiles:     10000,
		MaxContainers:     1000,
	}
}
