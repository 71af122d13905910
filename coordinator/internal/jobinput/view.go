package jobinput

import "github.com/kbase/cts/coordinator/wire"

// APIView renders the job input as the API shows it in a full job record: runtime as an
// ISO 8601 duration (FormatDuration), memory in bytes, input files with their CRC64/NVME.
// Empty optional fields are omitted, as the Python service's exclude_none does.
func (ji *JobInput) APIView() wire.JobInputView {
	v := ji.APIPreview()
	v.InputFiles = make([]wire.InputFileView, len(ji.InputFiles))
	for i, f := range ji.InputFiles {
		v.InputFiles[i] = wire.InputFileView{File: f.File, CRC64NVME: f.CRC64NVME, DataID: f.DataID}
	}
	return v
}

// APIPreview renders the job input as the API shows it in a job list (JobInputPreview):
// the same as APIView without input_files.
func (ji *JobInput) APIPreview() wire.JobInputView {
	return wire.JobInputView{
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
