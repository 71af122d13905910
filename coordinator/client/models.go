package client

import (
	"github.com/kbase/cts/coordinator/wire"
	"github.com/kbase/cts/shared/args"
)

// The client's models are the API's own (package wire): the server encodes them and the
// OpenAPI document describes them, so they cannot drift apart.
type (
	ServiceInfo       = wire.ServiceInfo
	AllowedPath       = wire.AllowedPath
	WhoAmI            = wire.WhoAmI
	Site              = wire.Site
	Transition        = wire.Transition
	JobStatus         = wire.JobStatus
	S3File            = wire.S3File
	JobImage          = wire.JobImage
	Image             = wire.Image
	ImageRegistration = wire.ImageRegistration
	Job               = wire.Job
	AdminJob          = wire.AdminJob
	Launch            = wire.Launch
	SubJob            = wire.SubJob
	ContainerProgress = wire.ContainerProgress
	Refdata           = wire.Refdata
	RefdataStatus     = wire.RefdataStatus
	RefdataTransition = wire.RefdataTransition
	Timestamp         = wire.Timestamp

	// The response wrappers, and the models of routes the client has no method for yet.
	Sites               = wire.Sites
	Jobs                = wire.Jobs
	Images              = wire.Images
	SubJobs             = wire.SubJobs
	ExitCodes           = wire.ExitCodes
	JobProgress         = wire.JobProgress
	RefdataList         = wire.RefdataList
	SubmitJobResponse   = wire.SubmitJobResponse
	JobPreview          = wire.JobPreview
	ContainerRun        = wire.ContainerRun
	S3Listing           = wire.S3Listing
	S3Object            = wire.S3Object
	UpdateAdminMeta     = wire.UpdateAdminMeta
	UnsentNotifications = wire.UnsentNotifications

	// JobInput is the body of POST /jobs; JobInputView is a job's input in the job views.
	JobInput     = wire.JobInput
	JobInputView = wire.JobInputView
	InputFile    = wire.InputFile
	// InputFileView is an input file in the job views (always an object).
	InputFileView = wire.InputFileView
	Size          = wire.Size
	Duration      = wire.Duration

	// The job parameters are shared/args' own.
	Params    = args.Parameters
	Parameter = args.Parameter
	Arg       = args.Arg
	EnvVar    = args.EnvVar
	Env       = args.Environment
)

// Literal returns a literal argument.
func Literal(s string) Arg { return Arg{Literal: s} }

// InputFilesArg returns the parameter that expands to the container's input files in format
// (one of "comma_separated_list", "space_separated_list", "repeat_parameter").
func InputFilesArg(format string) Arg {
	return Arg{Param: &Parameter{Type: args.TypeInputFiles, InputFilesFormat: format}}
}

// ContainerNumberArg returns the parameter that expands to the container number.
func ContainerNumberArg() Arg { return Arg{Param: &Parameter{Type: args.TypeContainerNumber}} }

// DecodeJobInput decodes a JobInput strictly: unknown keys at any level are errors (the service
// refuses them too, and a misspelled key silently dropped here would change the job).
func DecodeJobInput(data []byte) (*JobInput, error) { return wire.DecodeJobInput(data) }
