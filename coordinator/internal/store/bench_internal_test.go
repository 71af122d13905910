package store

import (
	"testing"

	"github.com/kbase/cts/coordinator/internal/jobinput"
	"github.com/kbase/cts/shared/args"
)

// BenchmarkJobInputRoundTrip measures the JSON/extended-JSON conversion of a job_input with
// 100 input files, paid once per job written and once per job read.
func BenchmarkJobInputRoundTrip(b *testing.B) {
	in := jobinput.JobInput{Cluster: "kbase", Image: "img", NumContainers: 4, CPUs: 1, Memory: 1 << 30,
		RuntimeSeconds: 60, OutputDir: "b/out/",
		Params: args.Parameters{InputMountPoint: "/in", OutputMountPoint: "/out",
			Args: []args.Arg{{Literal: "-x"}, {Param: &args.Parameter{Type: args.TypeInputFiles, InputFilesFormat: args.SpaceSeparatedList}}}}}
	for range 100 {
		in.InputFiles = append(in.InputFiles, jobinput.InputFile{File: "bucket/some/path/file.fa", CRC64NVME: "AAAAAAAAAAA="})
	}
	for b.Loop() {
		raw, err := encodeInput(&in)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := decodeInput(raw); err != nil {
			b.Fatal(err)
		}
	}
}
