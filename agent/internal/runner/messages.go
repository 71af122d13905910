package runner

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kbase/cts/agent/internal/container"
)

// imageMessage is the user's sentence for a failure to pull or prepare the image, or to use
// the node's container runtime: what happened and what to do. "" leaves the generic message
// (the admin error has the details).
func imageMessage(image string, err error) string {
	switch {
	case errors.Is(err, container.ErrDigestMismatch):
		return fmt.Sprintf("The container image %s was refused: its content does not match its digest, so the registry served corrupted or altered data. Nothing ran; please tell the CTS admins.", image)
	case errors.Is(err, container.ErrUnsafeLayer):
		return fmt.Sprintf("The container image %s was refused: a layer tries to write outside the image's file system. Nothing ran; the image must be rebuilt.", image)
	case errors.Is(err, container.ErrTooLarge):
		return fmt.Sprintf("The container image %s is larger unpacked than this site allows. Nothing ran; use a smaller image or ask the CTS admins.", image)
	case errors.Is(err, container.ErrImageUnavailable):
		return fmt.Sprintf("The container image %s could not be pulled from its registry (%s). Nothing ran; check that the image still exists there, or ask the CTS admins.", image, lastCause(err))
	case errors.Is(err, container.ErrNoSpace):
		return "The compute node ran out of disk space while preparing the container image. Nothing ran; resubmit the job, and tell the CTS admins if it happens again."
	case errors.Is(err, container.ErrEngineUnavailable):
		return "The container runtime of the compute node is not working, so the job could not run there. Resubmit the job, and tell the CTS admins if it happens again."
	}
	return ""
}

// lastCause is the innermost message of a chain of "op: cause" errors, shortened.
func lastCause(err error) string {
	msg := err.Error()
	for _, sentinel := range []error{container.ErrImageUnavailable} {
		if i := strings.LastIndex(msg, sentinel.Error()+": "); i >= 0 {
			msg = msg[i+len(sentinel.Error())+2:]
		}
	}
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	return msg
}

// humanBytes shows a size in the decimal units users submit (MB, GB), with the exact bytes.
func humanBytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%s GB (%d bytes)", trimFloat(float64(n)/1e9), n)
	case n >= 1e6:
		return fmt.Sprintf("%s MB (%d bytes)", trimFloat(float64(n)/1e6), n)
	}
	return fmt.Sprintf("%d bytes", n)
}

// humanDuration shows a runtime limit in words: "90 seconds", "5 minutes", "2.5 hours".
func humanDuration(d time.Duration) string {
	unit := func(v float64, name string) string {
		if s := trimFloat(v); s != "1" {
			return s + " " + name + "s"
		}
		return "1 " + name
	}
	switch {
	case d >= time.Hour:
		return unit(d.Hours(), "hour")
	case d >= time.Minute:
		return unit(d.Minutes(), "minute")
	}
	return unit(d.Seconds(), "second")
}

func trimFloat(f float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", f), "0"), ".")
}
