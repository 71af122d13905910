package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kbase/cts/coordinator/client"
)

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04:05Z")
}

func oneArg(args []string, what string) (string, error) {
	if len(args) != 1 || args[0] == "" {
		return "", usagef("want exactly one %s, got %d arguments", what, len(args))
	}
	return args[0], nil
}

// argsFlag appends ordered items to params.args; the four argument flags share one list so the
// order on the command line is the order of the arguments.
type argsFlag struct {
	list *[]client.Arg
	set  *bool
	kind string // "literal", "param", "files", "container"
}

func (a argsFlag) String() string { return "" }

func (a argsFlag) IsBoolFlag() bool { return a.kind == "container" }

func (a argsFlag) Set(v string) error {
	var arg client.Arg
	switch a.kind {
	case "literal":
		arg = client.Literal(v)
	case "container":
		if v != "true" {
			return nil
		}
		arg = client.ContainerNumberArg()
	case "files":
		f, ok := map[string]string{
			"space": "space_separated_list", "comma": "comma_separated_list", "repeat": "repeat_parameter",
			"space_separated_list": "space_separated_list", "comma_separated_list": "comma_separated_list",
			"repeat_parameter": "repeat_parameter",
		}[v]
		if !ok {
			return fmt.Errorf("format %q: want space, comma or repeat", v)
		}
		arg = client.InputFilesArg(f)
	case "param":
		var p client.Parameter
		dec := json.NewDecoder(strings.NewReader(v))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			return fmt.Errorf("parameter %q: %w", v, err)
		}
		arg = client.Arg{Param: &p}
	}
	*a.list = append(*a.list, arg)
	*a.set = true
	return nil
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// submitFlags holds what cts submit takes on the command line.
type submitFlags struct {
	image, cluster, outputDir, memory, runtime string
	containers, cpus                           int
	inputs, inputRoots, env                    listFlag
	inputList                                  string
	args                                       []client.Arg
	argsSet                                    bool
	inputMount, outputMount, refdataMount      string
	declobber                                  bool
	dryRun                                     bool
	wait                                       waitFlags
}

func jobCommands() []*command {
	return []*command{
		{name: "submit", args: "[JOBFILE.json|.yaml] [FLAGS]",
			summary: "submit a job from a job file (the CTS JobInput, JSON or YAML) and/or flags; prints the job ID",
			setup: func(fs *flag.FlagSet) func(*cli, []string) error {
				f := &submitFlags{}
				fs.StringVar(&f.image, "image", "", "registered `image`: name, name:tag or name@sha256:...")
				fs.StringVar(&f.cluster, "cluster", "", "`site` (default: $CTS_CLUSTER or cluster in the config file)")
				fs.Var(&f.inputs, "input", "input file as `bucket/key` (repeatable)")
				fs.StringVar(&f.inputList, "input-list", "", "`file` with one input bucket/key per line")
				fs.Var(&f.inputRoots, "input-root", "keep input paths below this `root` inside the container (repeatable)")
				fs.StringVar(&f.outputDir, "output-dir", "", "output folder as `bucket/prefix`")
				fs.IntVar(&f.containers, "containers", 0, "`number` of containers to split the inputs across (service default 1)")
				fs.IntVar(&f.cpus, "cpus", 0, "CPUs per container (service default 1)")
				fs.StringVar(&f.memory, "memory", "", "`memory` per container: bytes or with units, e.g. 100MB, 1.5GiB")
				fs.StringVar(&f.runtime, "runtime", "", "`runtime` per container: seconds, ISO 8601 (PT30M) or a Go duration (30m)")
				fs.Var(argsFlag{&f.args, &f.argsSet, "literal"}, "arg", "a literal `argument` (repeatable; the argument flags keep their order)")
				fs.Var(argsFlag{&f.args, &f.argsSet, "files"}, "arg-files", "an argument that expands to the container's input files in this `format`: space, comma or repeat")
				fs.Var(argsFlag{&f.args, &f.argsSet, "container"}, "arg-container", "an argument that expands to the container number")
				fs.Var(argsFlag{&f.args, &f.argsSet, "param"}, "arg-param", `an argument parameter as JSON (e.g. '{"type":"input_files","input_files_format":"repeat_parameter","flag":"-i"}')`)
				fs.Var(&f.env, "env", "an environment variable `KEY=VALUE` (repeatable)")
				fs.StringVar(&f.inputMount, "input-mount", "", "`path` where the container sees its inputs (service default /input_files)")
				fs.StringVar(&f.outputMount, "output-mount", "", "`path` where the container writes its outputs (service default /output_files)")
				fs.StringVar(&f.refdataMount, "refdata-mount", "", "`path` where the container sees its reference data")
				fs.BoolVar(&f.declobber, "declobber", false, "put each container's outputs under <container number>/")
				fs.BoolVar(&f.dryRun, "dry-run", false, "print the job input that would be submitted and stop")
				f.wait.register(fs, true)
				return func(c *cli, args []string) error { return submit(c, f, fs, args) }
			}},
		{name: "status", args: "JOB", summary: "show a job's state and transitions",
			setup: func(fs *flag.FlagSet) func(*cli, []string) error {
				asJSON := fs.Bool("json", false, "print the status as JSON")
				return withArg("job ID", true, func(c *cli, cl *client.Client, id string) error {
					st, err := cl.Status(c.ctx, id)
					if err != nil {
						return err
					}
					if *asJSON {
						return printJSON(c.stdout, st)
					}
					fmt.Fprintf(c.stdout, "job %s  %s  (user %s)\n", st.ID, st.State, st.User)
					for _, t := range st.Transitions {
						fmt.Fprintf(c.stdout, "  %-28s %s\n", t.State, formatTime(t.Time.Time))
					}
					return nil
				})
			}},
		{name: "get", args: "JOB", summary: "print a job as JSON (input, image, outputs, error)",
			setup: func(fs *flag.FlagSet) func(*cli, []string) error {
				return withArg("job ID", true, func(c *cli, cl *client.Client, id string) error {
					return c.printResult(cl.Job(c.ctx, id))
				})
			}},
		{name: "list", args: "[FLAGS]", summary: "list your jobs, most recently changed first",
			setup: func(fs *flag.FlagSet) func(*cli, []string) error {
				lf := &listFlags{}
				lf.register(fs, false)
				return func(c *cli, args []string) error { return listJobs(c, lf, args, false) }
			}},
		{name: "cancel", args: "JOB", summary: "cancel a job",
			setup: func(fs *flag.FlagSet) func(*cli, []string) error {
				return withArg("job ID", true, func(c *cli, cl *client.Client, id string) error {
					return c.done(cl.Cancel(c.ctx, id), "job %s canceling\n", id)
				})
			}},
		{name: "exit-codes", args: "JOB", summary: "show the exit code of every container of a job",
			setup: func(fs *flag.FlagSet) func(*cli, []string) error {
				asJSON := jsonFlag(fs)
				return withArg("job ID", true, func(c *cli, cl *client.Client, id string) error {
					codes, err := cl.ExitCodes(c.ctx, id)
					if err != nil {
						return err
					}
					if *asJSON {
						return printJSON(c.stdout, map[string]any{"exit_codes": codes})
					}
					for i, code := range codes {
						s := "-"
						if code != nil {
							s = strconv.Itoa(*code)
						}
						fmt.Fprintf(c.stdout, "container %d: %s\n", i, s)
					}
					return nil
				})
			}},
	}
}

func submit(c *cli, f *submitFlags, fs *flag.FlagSet, args []string) error {
	if len(args) > 1 {
		return usagef("at most one job file, got %d arguments", len(args))
	}
	in := &client.JobInput{}
	if len(args) == 1 {
		var err error
		if in, err = readJobFile(args[0]); err != nil {
			return &exitError{code: exitUsage, msg: err.Error()}
		}
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	if err := f.apply(in, set); err != nil {
		return err
	}
	if in.Cluster == "" {
		if cfg, err := c.config(); err == nil && cfg.cluster != "" {
			in.Cluster = cfg.cluster
		} else if err != nil {
			return err
		}
	}
	if f.dryRun {
		return printJSON(c.stdout, in)
	}
	if len(args) == 0 && in.Image == "" {
		return usagef("give a job file or at least --image, --input and --output-dir")
	}
	cl, err := c.client(true)
	if err != nil {
		return err
	}
	id, err := cl.Submit(c.ctx, in)
	if err != nil {
		return err
	}
	if f.wait.json {
		b, _ := json.Marshal(map[string]string{"job_id": id})
		fmt.Fprintln(c.stdout, string(b))
	} else {
		fmt.Fprintln(c.stdout, id)
	}
	if !f.wait.wait {
		return nil
	}
	return waitJob(c, cl, id, &f.wait)
}

// apply overrides the job input with the flags that were set.
func (f *submitFlags) apply(in *client.JobInput, set map[string]bool) error {
	if set["image"] {
		in.Image = f.image
	}
	if set["cluster"] {
		in.Cluster = f.cluster
	}
	if set["output-dir"] {
		in.OutputDir = f.outputDir
	}
	if set["containers"] {
		in.NumContainers = f.containers
	}
	if set["cpus"] {
		in.CPUs = f.cpus
	}
	if set["memory"] {
		in.Memory = client.Size(f.memory)
	}
	if set["runtime"] {
		rt := f.runtime
		if d, err := time.ParseDuration(rt); err == nil {
			rt = strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
		}
		in.Runtime = client.Duration(rt)
	}
	if set["input"] || set["input-list"] {
		in.InputFiles = nil
		for _, p := range f.inputs {
			in.InputFiles = append(in.InputFiles, client.InputFile{File: p})
		}
		if f.inputList != "" {
			files, err := readLines(f.inputList)
			if err != nil {
				return &exitError{code: exitUsage, msg: err.Error()}
			}
			for _, p := range files {
				in.InputFiles = append(in.InputFiles, client.InputFile{File: p})
			}
		}
	}
	if set["input-root"] {
		in.InputRoots = f.inputRoots
	}
	if f.argsSet {
		in.Params.Args = f.args
	}
	for _, kv := range f.env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return usagef("--env %q: want KEY=VALUE", kv)
		}
		in.Params.Environment.Set(k, client.Literal(v))
	}
	if set["input-mount"] {
		in.Params.InputMountPoint = f.inputMount
	}
	if set["output-mount"] {
		in.Params.OutputMountPoint = f.outputMount
	}
	if set["refdata-mount"] {
		in.Params.RefdataMountPoint = f.refdataMount
	}
	if set["declobber"] {
		in.Params.Declobber = f.declobber
	}
	return nil
}

// readLines returns the non-empty lines of a file, without '#' comments.
func readLines(path string) ([]string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("input list: %w", err)
	}
	defer fh.Close()
	var out []string
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("input list %s: %w", path, err)
	}
	return out, nil
}

// listFlags are the filters of cts list and cts admin jobs.
type listFlags struct {
	user, state, cluster, after, before string
	limit                               int
	json                                bool
}

func (l *listFlags) register(fs *flag.FlagSet, admin bool) {
	if admin {
		fs.StringVar(&l.user, "user", "", "only this `user`'s jobs")
	}
	fs.StringVar(&l.state, "state", "", "only jobs in this `state`")
	fs.StringVar(&l.cluster, "cluster", "", "only jobs of this `site`")
	fs.StringVar(&l.after, "after", "", "only jobs last changed at or after this `time`: RFC 3339, YYYY-MM-DD (UTC), or a duration ago (24h)")
	fs.StringVar(&l.before, "before", "", "only jobs last changed before this `time` (same forms as --after)")
	fs.IntVar(&l.limit, "limit", 0, "at most this `number` of jobs (1-1000; service default 1000)")
	fs.BoolVar(&l.json, "json", false, "print JSON")
}

// parseWhen reads an RFC 3339 time, a date (UTC midnight) or a duration before now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2024-10-24T22:35:40Z), a date (2024-10-24) or a duration ago (36h)", s)
}

func listJobs(c *cli, lf *listFlags, args []string, admin bool) error {
	if len(args) != 0 {
		return usagef("unexpected arguments %q", args)
	}
	opts := client.ListOptions{User: lf.user, State: lf.state, Cluster: lf.cluster, Limit: lf.limit}
	now := time.Now()
	var err error
	if lf.after != "" {
		if opts.After, err = parseWhen(lf.after, now); err != nil {
			return usagef("--after: %v", err)
		}
	}
	if lf.before != "" {
		if opts.Before, err = parseWhen(lf.before, now); err != nil {
			return usagef("--before: %v", err)
		}
	}
	if lf.limit < 0 || lf.limit > 1000 {
		return usagef("--limit %d: want 1-1000", lf.limit)
	}
	cl, err := c.client(true)
	if err != nil {
		return err
	}
	var jobs []client.Job
	if admin {
		jobs, err = cl.AdminListJobs(c.ctx, opts)
	} else {
		jobs, err = cl.ListJobs(c.ctx, opts)
	}
	if err != nil {
		return err
	}
	if lf.json {
		return printJSONList(c.stdout, "jobs", jobs)
	}
	header := "JOB\tSTATE\tCLUSTER\tIMAGE\tCONTAINERS\tUPDATED"
	if admin {
		header = "JOB\tUSER\tSTATE\tCLUSTER\tIMAGE\tCONTAINERS\tUPDATED"
	}
	return printTable(c.stdout, header, jobs, func(w io.Writer, j client.Job) {
		updated := time.Time{}
		if n := len(j.Transitions); n > 0 {
			updated = j.Transitions[n-1].Time.Time
		}
		img := j.Image.Name
		if j.Image.Tag != "" {
			img += ":" + j.Image.Tag
		}
		if admin {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", j.ID, j.User, j.State, j.Input.Cluster, img, j.Input.NumContainers, formatTime(updated))
		} else {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\n", j.ID, j.State, j.Input.Cluster, img, j.Input.NumContainers, formatTime(updated))
		}
	})
}
