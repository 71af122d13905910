package api

import (
	"github.com/kbase/cts/coordinator/internal/images"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/wire"
)

// The conversions of the coordinator's records into the API's models (package wire), which
// the handlers encode and the OpenAPI document describes.

func jobImageView(im images.Image) wire.JobImage {
	return wire.JobImage{
		Name: im.Name, Digest: im.Digest, Tag: im.Tag, Entrypoint: nonNilStrings(im.Entrypoint),
		RefdataID: im.RefdataID, DefaultRefdataMountPoint: im.DefaultRefdataMountPoint,
		RegisteredBy: im.RegisteredBy, RegisteredOn: wire.At(im.RegisteredOn),
	}
}

func imageView(im images.Image) wire.Image {
	return wire.Image{JobImage: jobImageView(im), URLs: im.URLs, UsageNotes: im.UsageNotes}
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func transitionsView(ts []jobs.Transition, admin bool) []wire.Transition {
	out := make([]wire.Transition, 0, len(ts))
	for _, t := range ts {
		v := wire.Transition{State: t.State, Time: wire.At(t.Time)}
		if admin {
			sent := t.NotifSent
			v.TransID, v.NotifSent = t.TransID, &sent
		}
		out = append(out, v)
	}
	return out
}

func statusView(j *jobs.Job) wire.JobStatus {
	meta := j.AdminMeta
	if meta == nil {
		meta = map[string]any{}
	}
	return wire.JobStatus{ID: j.ID, User: j.User, AdminMeta: meta, State: j.State, Transitions: transitionsView(j.Transitions, false)}
}

// outputsView renders outputs; nil stays nil (omitted where the model omits it).
func outputsView(os []jobs.Output) []wire.S3File {
	if os == nil {
		return nil
	}
	out := make([]wire.S3File, len(os))
	for i, o := range os {
		out[i] = wire.S3File{File: o.File, CRC64NVME: o.CRC64NVME}
	}
	return out
}

// jobView renders a job; a preview (list entry) has no input files and no outputs.
func jobView(j *jobs.Job, preview bool) wire.Job {
	v := wire.Job{
		JobStatus: statusView(j), Image: jobImageView(j.Image), InputFileCount: j.InputFileCount,
		CPUHours: j.CPUHours, CPUFactor: j.CPUFactor, MaxMemory: j.MaxMemory, OutputFileCount: j.OutputFileCount,
		Error: j.Error, LogPath: j.LogPath,
	}
	if preview {
		v.Input = j.Input.APIPreview()
	} else {
		v.Input = j.Input.APIView()
		v.Outputs = outputsView(j.Outputs)
	}
	return v
}

func adminJobView(j *jobs.Job) wire.AdminJob {
	v := wire.AdminJob{Job: jobView(j, false), Cleaned: j.Cleaned, AdminError: j.AdminError, Traceback: j.Traceback}
	if l := j.Launch; l != nil {
		v.Launch = &wire.Launch{Site: l.Site, Handle: l.Handle, Attempt: l.Attempt, Retries: l.Retries}
		if !l.LaunchedAt.IsZero() {
			at := wire.At(l.LaunchedAt)
			v.Launch.LaunchedAt = &at
		}
	}
	v.Transitions = transitionsView(j.Transitions, true)
	return v
}

func subJobView(sj *jobs.SubJob) wire.SubJob {
	v := wire.SubJob{
		ID: sj.JobID, SubID: sj.SubID, State: sj.State, Transitions: transitionsView(sj.Transitions, false),
		ExitCode: sj.ExitCode, Outputs: outputsView(sj.Outputs),
	}
	if sj.AdminError != "" {
		v.AdminError = &sj.AdminError
	}
	if sj.Traceback != "" {
		v.Traceback = &sj.Traceback
	}
	return v
}
