// Package args owns the CTS job parameters (the "params" of a JobInput) and
// turns them into the exec-form command line and environment of one container (§3.5).
//
// Unlike the Python service, no shell quoting is applied: the command is an argv that reaches
// the container process exactly as generated, so a file name with spaces or quotes arrives
// unchanged. It performs no I/O.
package args

// Input files formats of an input_files parameter.
const (
	CommaSeparatedList = "comma_separated_list"
	SpaceSeparatedList = "space_separated_list"
	RepeatParameter    = "repeat_parameter"
)

// Parameter types.
const (
	TypeInputFiles      = "input_files"
	TypeManifestFile    = "manifest_file"
	TypeContainerNumber = "container_number"
)

// Parameters is the "params" object of a JobInput. Empty mount points are left out of the
// JSON (the service then applies its defaults; the views always have them).
type Parameters struct {
	InputMountPoint   string      `json:"input_mount_point,omitempty"`
	OutputMountPoint  string      `json:"output_mount_point,omitempty"`
	Declobber         bool        `json:"declobber"`
	RefdataMountPoint string      `json:"refdata_mount_point,omitempty"`
	Args              []Arg       `json:"args,omitempty"`
	Environment       Environment `json:"environment,omitempty"`
}

// Parameter is a value computed per container: the container's input files, a manifest
// file, or the container number. As an argument it may carry a Flag; as an environment value
// it may not.
type Parameter struct {
	Type               string `json:"type"`
	InputFilesFormat   string `json:"input_files_format,omitempty"`
	ManifestFileFormat string `json:"manifest_file_format,omitempty"`
	ManifestFileHeader string `json:"manifest_file_header,omitempty"`
	ContainerNumPrefix string `json:"container_num_prefix,omitempty"`
	ContainerNumSuffix string `json:"container_num_suffix,omitempty"`
	Flag               string `json:"flag,omitempty"`
}

// Arg is one item of params.args: a literal string (an ArgumentString or a Flag) or a
// Parameter (with an optional flag). In JSON it is either a string or an object.
type Arg struct {
	Literal string
	Param   *Parameter
}

// EnvVar is one environment entry: a literal string value or a Parameter.
type EnvVar struct {
	Key   string
	Value Arg
}

// Environment is params.environment: a JSON object whose key order is kept (the generated
// environment follows it, as in the Python service).
type Environment []EnvVar

// Set replaces the value of key, or appends it.
func (e *Environment) Set(key string, v Arg) {
	for i := range *e {
		if (*e)[i].Key == key {
			(*e)[i].Value = v
			return
		}
	}
	*e = append(*e, EnvVar{Key: key, Value: v})
}
