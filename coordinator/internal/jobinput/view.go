package jobinput

import "github.com/kbase/cts/shared/args"

// View is a JobInput as the CTS API renders it: runtime as an ISO 8601 duration
// (FormatDuration), memory in bytes, input files as {file, crc64nvme, data_id?} objects.
// Empty optional fields are omitted, as the Python service's exclude_none does.
type View struct {
	Cluster       string          `json:"cluster"`
	Image         string          `json:"image"`
	Params        args.Parameters `json:"params"`
	NumContainers int             `json:"num_containers"`
	CPUs          int             `json:"cpus"`
	Memory        int64           `json:"memory"`
	Runtime       string          `json:"runtime"`
	InputRoots    []string        `json:"input_roots,omitempty"`
	OutputDir     string          `json:"output_dir"`
	// InputFiles is nil in a preview (JobInputPreview has no input_files).
	InputFiles []InputFile `json:"input_files,omitempty"`
}

// APIView renders the job input as the API shows it in a full job record.
func (ji *JobInput) APIView() View {
	v := ji.APIPreview()
	v.InputFiles = ji.InputFiles
	return v
}

// APIPreview renders the job input as the API shows it in a job list (JobInputPreview):
// the same as APIView without input_files.
func (ji *JobInput) APIPreview() View {
	return View{
		Cluster:       ji.Cluster,
		Image:         ji.Image,
		Params:        ji.Params,
		NumContainers: ji.NumContainers,
		CPUs:          ji.CPUs,
		Memory:        ji.Memory,
		Runtime:       FormatDuration(ji.RuntimeSeconds),
		InputRoots:    ji.InputRoots,
		OutputDir:     ji.OutputDir,
	}
}
