package api

import (
	"encoding/json"

	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/images"
	"github.com/kbase/cts/coordinator/internal/jobinput"
	"github.com/kbase/cts/coordinator/internal/jobs"
)

// The views render stored models as the CTS API shows them: nulls omitted, times as ISO 8601
// UTC with Z, runtime as an ISO 8601 duration. Maps keep this file short; key order in JSON
// output is alphabetical, which no CTS client depends on.

func imageView(im images.Image, usage bool) map[string]any {
	v := map[string]any{
		"name": im.Name, "digest": im.Digest, "entrypoint": im.Entrypoint,
		"registered_by": im.RegisteredBy, "registered_on": ctserr.FormatTime(im.RegisteredOn),
	}
	if im.Tag != "" {
		v["tag"] = im.Tag
	}
	if im.RefdataID != "" {
		v["refdata_id"] = im.RefdataID
	}
	if im.DefaultRefdataMountPoint != "" {
		v["default_refdata_mount_point"] = im.DefaultRefdataMountPoint
	}
	if usage {
		if len(im.URLs) > 0 {
			v["urls"] = im.URLs
		}
		if im.UsageNotes != "" {
			v["usage_notes"] = im.UsageNotes
		}
	}
	return v
}

func transitionsView(ts []jobs.Transition, admin bool) []map[string]any {
	out := make([]map[string]any, 0, len(ts))
	for _, t := range ts {
		m := map[string]any{"state": t.State, "time": ctserr.FormatTime(t.Time)}
		if admin {
			m["trans_id"] = t.TransID
			m["notif_sent"] = t.NotifSent
		}
		out = append(out, m)
	}
	return out
}

func statusView(j *jobs.Job) map[string]any {
	meta := j.AdminMeta
	if meta == nil {
		meta = map[string]any{}
	}
	return map[string]any{
		"id": j.ID, "user": j.User, "admin_meta": meta, "state": j.State,
		"transition_times": transitionsView(j.Transitions, false),
	}
}

// jobInputView renders the job input as the API shows it.
func jobInputView(in jobinput.JobInput) map[string]any {
	b, _ := json.Marshal(in)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	m["runtime"] = jobinput.FormatDuration(in.RuntimeSeconds)
	return m
}

func jobView(j *jobs.Job, admin bool) map[string]any {
	v := statusView(j)
	v["transition_times"] = transitionsView(j.Transitions, admin)
	v["job_input"] = jobInputView(j.Input)
	v["image"] = imageView(j.Image, false)
	v["input_file_count"] = j.InputFileCount
	if j.CPUHours != nil {
		v["cpu_hours"] = *j.CPUHours
	}
	if j.CPUFactor != nil {
		v["cpu_factor"] = *j.CPUFactor
	}
	if j.MaxMemory != nil {
		v["max_memory"] = *j.MaxMemory
	}
	if j.OutputFileCount != nil {
		v["output_file_count"] = *j.OutputFileCount
	}
	if j.Error != "" {
		v["error"] = j.Error
	}
	if j.LogPath != "" {
		v["logpath"] = j.LogPath
	}
	if j.Outputs != nil {
		v["outputs"] = j.Outputs
	}
	if admin {
		v["cleaned"] = j.Cleaned
		if j.AdminError != "" {
			v["admin_error"] = j.AdminError
		}
		if j.Traceback != "" {
			v["traceback"] = j.Traceback
		}
		if j.Launch != nil {
			v["launch"] = j.Launch
		}
	}
	return v
}
