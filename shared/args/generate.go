package args

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrManifestUnsupported is returned by Generate for manifest_file parameters, which no
// launcher supports yet.
var ErrManifestUnsupported = errors.New("manifest files are not supported yet")

// ErrInvalidParameter is returned by Generate for a parameter that validation would have
// refused (an unknown type or format, repeat_parameter without a flag, a list format that an
// environment value cannot take).
var ErrInvalidParameter = errors.New("invalid parameter")

// Generate builds the command line and environment of container number container
// (0-based), as the Python service does but without its shell quoting: every element reaches the
// container process exactly as written here.
//
// files are the container-side paths of this container's inputs, in order, already joined
// with the input mount point. cmd is entrypoint followed by the expanded args; env holds
// "KEY=value" entries in the environment's order, where a parameter's value is expanded
// ignoring any flag. p should have passed Validate.
func Generate(entrypoint []string, p Parameters, container int, files []string) (cmd []string, env []string, err error) {
	if container < 0 {
		return nil, nil, fmt.Errorf("generate arguments: negative container number %d", container)
	}
	cmd = make([]string, 0, len(entrypoint)+len(p.Args)+len(files))
	cmd = append(cmd, entrypoint...)
	for i, a := range p.Args {
		if a.Param == nil {
			cmd = append(cmd, a.Literal)
			continue
		}
		cmd, err = appendParam(cmd, a.Param, container, files)
		if err != nil {
			return nil, nil, fmt.Errorf("generate argument %d: %w", i, err)
		}
	}
	if len(p.Environment) > 0 {
		env = make([]string, 0, len(p.Environment))
	}
	for _, e := range p.Environment {
		v, err := envValue(e.Value, container, files)
		if err != nil {
			return nil, nil, fmt.Errorf("generate environment %s: %w", e.Key, err)
		}
		env = append(env, e.Key+"="+v)
	}
	return cmd, env, nil
}

// appendParam expands one args parameter. A flag ending in '=' is glued to the value that
// follows it; any other flag is a separate element.
func appendParam(cmd []string, p *Parameter, container int, files []string) ([]string, error) {
	glued := strings.HasSuffix(p.Flag, "=")
	// one appends a single value after the flag.
	one := func(v string) []string {
		switch {
		case p.Flag == "":
			return append(cmd, v)
		case glued:
			return append(cmd, p.Flag+v)
		default:
			return append(cmd, p.Flag, v)
		}
	}
	switch p.Type {
	case TypeContainerNumber:
		return one(containerNumber(p, container)), nil
	case TypeManifestFile:
		return nil, ErrManifestUnsupported
	case TypeInputFiles:
	default:
		return nil, fmt.Errorf("%w: unknown parameter type %q", ErrInvalidParameter, p.Type)
	}
	switch p.InputFilesFormat {
	case CommaSeparatedList:
		return one(strings.Join(files, ",")), nil
	case SpaceSeparatedList:
		switch {
		case p.Flag == "":
		case glued && len(files) > 0:
			cmd = append(cmd, p.Flag+files[0])
			files = files[1:]
		case !glued:
			cmd = append(cmd, p.Flag)
		}
		return append(cmd, files...), nil
	case RepeatParameter:
		if p.Flag == "" {
			return nil, fmt.Errorf("%w: repeat_parameter requires a flag", ErrInvalidParameter)
		}
		for _, f := range files {
			if glued {
				cmd = append(cmd, p.Flag+f)
			} else {
				cmd = append(cmd, p.Flag, f)
			}
		}
		return cmd, nil
	}
	return nil, fmt.Errorf("%w: unknown input files format %q", ErrInvalidParameter, p.InputFilesFormat)
}

// envValue expands an environment value; flags are ignored.
func envValue(v Arg, container int, files []string) (string, error) {
	p := v.Param
	if p == nil {
		return v.Literal, nil
	}
	switch p.Type {
	case TypeContainerNumber:
		return containerNumber(p, container), nil
	case TypeManifestFile:
		return "", ErrManifestUnsupported
	case TypeInputFiles:
		if p.InputFilesFormat == CommaSeparatedList {
			return strings.Join(files, ","), nil
		}
		return "", fmt.Errorf("%w: an environment value cannot take the %q input files format",
			ErrInvalidParameter, p.InputFilesFormat)
	}
	return "", fmt.Errorf("%w: unknown parameter type %q", ErrInvalidParameter, p.Type)
}

func containerNumber(p *Parameter, container int) string {
	return p.ContainerNumPrefix + strconv.Itoa(container) + p.ContainerNumSuffix
}
