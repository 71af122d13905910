// Command cts is the CTS command-line tool: a client of the CTS REST API for users and admins
// (submit, status, get, list, cancel, wait with a live view, logs with -f (live), exit codes,
// images, reference data, sites, whoami, admin job commands, shell completion). The dev site
// is the separate program cts-dev, so that this one does not carry the embedded stack (a test
// keeps it out). The client commands are built on the public
// package coordinator/client; this package owns only the command line: flags, configuration
// (never printing the token), output formats and exit codes. docs/cli.md is its manual.
//
// Exit codes: 0 ok; 1 usage or configuration error; 2 the service answered with an error (its
// CTS message and app code are printed); 3 the job ended in error (wait, submit --wait); 4 the
// job was canceled; 5 timeout; 6 the service could not be reached; 130 interrupted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/kbase/cts/coordinator/client"
)

// Exit codes.
const (
	exitOK          = 0
	exitUsage       = 1
	exitAPI         = 2
	exitJobError    = 3
	exitCanceled    = 4
	exitTimeout     = 5
	exitUnreachable = 6
	exitInterrupted = 130
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// exitError ends a command with a specific exit code; msg (when set) is printed to stderr.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// usageError is a command-line mistake: exit code 1, with a pointer to the command's help.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// command is one cts command. setup declares the command's flags on fs and returns the
// function that runs it with the remaining positional arguments.
type command struct {
	name    string // "submit", "images list"
	args    string // positional arguments, for help
	summary string
	setup   func(fs *flag.FlagSet) func(c *cli, args []string) error
}

// cli is what a running command sees.
type cli struct {
	ctx            context.Context
	stdout, stderr io.Writer
	getenv         func(string) string
	global         globalFlags
	cfg            *config
}

// commands lists every command but dev and help; main's help and the completion scripts are
// generated from it.
var commands []*command

func init() {
	commands = append(commands, jobCommands()...)
	commands = append(commands, waitCommand(), logsCommand())
	commands = append(commands, imageCommands()...)
	commands = append(commands, refdataCommands()...)
	commands = append(commands, adminCommands()...)
	commands = append(commands, infoCommands()...)
	commands = append(commands, s3Commands()...)
	commands = append(commands, completionCommand())
}

// groups are the first words of two-word commands.
func groups() map[string]bool {
	g := map[string]bool{}
	for _, c := range commands {
		if first, _, ok := strings.Cut(c.name, " "); ok {
			g[first] = true
		}
	}
	return g
}

func findCommand(args []string) (*command, []string) {
	if len(args) >= 2 {
		for _, c := range commands {
			if c.name == args[0]+" "+args[1] {
				return c, args[2:]
			}
		}
	}
	if len(args) >= 1 {
		for _, c := range commands {
			if c.name == args[0] {
				return c, args[1:]
			}
		}
	}
	return nil, nil
}

func addGlobalFlags(fs *flag.FlagSet, g *globalFlags) {
	fs.StringVar(&g.url, "url", g.url, "service URL (default: $CTS_URL or the config file)")
	fs.StringVar(&g.tokenFile, "token-file", g.tokenFile, "file holding the KBase token (default: $CTS_TOKEN, $CTS_TOKEN_FILE or the config file)")
	fs.StringVar(&g.config, "config", g.config, "config file (default: $CTS_CONFIG or ~/.config/cts/config.yaml)")
}

// run is the whole command line: it parses args, runs the command with getenv as its
// environment, and returns the exit code.
func run(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) > 0 && args[0] == "dev" {
		fmt.Fprintln(stderr, "cts: the dev site is the program cts-dev now: run `make dev`, or bin/cts-dev --dir .dev")
		return exitUsage
	}
	c := &cli{stdout: stdout, stderr: stderr, getenv: getenv}
	gfs := flag.NewFlagSet("cts", flag.ContinueOnError)
	gfs.SetOutput(io.Discard)
	addGlobalFlags(gfs, &c.global)
	if err := gfs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(stdout)
			return exitOK
		}
		fmt.Fprintf(stderr, "cts: %v (cts help lists the commands and global flags)\n", err)
		return exitUsage
	}
	rest := gfs.Args()
	if len(rest) == 0 {
		printHelp(stderr)
		return exitUsage
	}
	if rest[0] == "help" {
		return help(rest[1:], stdout, stderr)
	}
	cmd, cargs := findCommand(rest)
	if cmd == nil {
		if groups()[rest[0]] {
			fmt.Fprintf(stderr, "cts: %s needs a subcommand\n", rest[0])
			printGroupHelp(stderr, rest[0])
			return exitUsage
		}
		fmt.Fprintf(stderr, "cts: unknown command %q (cts help lists them)\n", rest[0])
		return exitUsage
	}
	fs := flag.NewFlagSet("cts "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addGlobalFlags(fs, &c.global)
	runFn := cmd.setup(fs)
	pos, err := parseInterspersed(fs, cargs)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printCommandHelp(stdout, cmd, fs)
			return exitOK
		}
		// One line and the usage, not the whole help: the mistake stays on the screen.
		fmt.Fprintf(stderr, "cts %s: %v\nusage: cts %s %s (cts %s -h lists the flags)\n", cmd.name, err, cmd.name, cmd.args, cmd.name)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c.ctx = ctx
	err = runFn(c, pos)
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	if msg := err.Error(); msg != "" {
		fmt.Fprintf(stderr, "cts %s: %s\n", cmd.name, msg)
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "usage: cts %s %s (cts %s -h for help)\n", cmd.name, cmd.args, cmd.name)
	}
	return code
}

// exitCode maps an error to the documented exit codes.
func exitCode(err error) int {
	var (
		ee *exitError
		ue *usageError
		ce *configError
		ae *client.APIError
	)
	switch {
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue), errors.As(err, &ce):
		return exitUsage
	case errors.As(err, &ae):
		return exitAPI
	case errors.Is(err, client.ErrUnreachable):
		return exitUnreachable
	case errors.Is(err, context.DeadlineExceeded):
		return exitTimeout
	case errors.Is(err, context.Canceled):
		return exitInterrupted
	}
	return exitUsage
}

// parseInterspersed parses flags that may come before, between or after the positional
// arguments ("cts logs JOB -f"); everything after "--" is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		consumed := len(args) - len(fs.Args())
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, fs.Args()...), nil
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// config loads the configuration once.
func (c *cli) config() (*config, error) {
	if c.cfg != nil {
		return c.cfg, nil
	}
	cfg, err := loadConfig(c.global, c.getenv)
	if err != nil {
		return nil, err
	}
	for _, w := range cfg.warnings {
		fmt.Fprintln(c.stderr, "cts: warning:", w)
	}
	c.cfg = cfg
	return cfg, nil
}

// client returns an API client; needToken says the command cannot work without a token.
func (c *cli) client(needToken bool) (*client.Client, error) {
	cfg, err := c.config()
	if err != nil {
		return nil, err
	}
	if cfg.url == "" {
		return nil, configErrorf("no service URL: set CTS_URL, url in %s, or --url", configHint(c.getenv))
	}
	if needToken && cfg.token == "" {
		return nil, configErrorf("no token: set CTS_TOKEN or CTS_TOKEN_FILE, token or token_file in %s, or --token-file", configHint(c.getenv))
	}
	cl, err := client.New(cfg.url, cfg.token, client.WithUserAgent("cts-cli"))
	if err != nil {
		return nil, &configError{err}
	}
	return cl, nil
}

func configHint(getenv func(string) string) string {
	if p := defaultConfigPath(getenv); p != "" {
		return p
	}
	return "the config file"
}

func printHelp(w io.Writer) {
	fmt.Fprint(w, `cts: the CTS command-line client

usage: cts [--url URL] [--token-file FILE] [--config FILE] COMMAND [ARGS] [FLAGS]

commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-22s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "  %-22s %s\n", "help", "help about a command: cts help COMMAND")
	fmt.Fprint(w, `
configuration: $CTS_URL, $CTS_TOKEN (or $CTS_TOKEN_FILE), or ~/.config/cts/config.yaml
(url, token or token_file, cluster); --url and --token-file override.
exit codes: 0 ok, 1 usage/config, 2 service error, 3 job error, 4 job canceled, 5 timeout,
6 service unreachable, 130 interrupted.
`)
}

func printGroupHelp(w io.Writer, group string) {
	for _, c := range commands {
		if strings.HasPrefix(c.name, group+" ") {
			fmt.Fprintf(w, "  cts %-20s %s\n", c.name, c.summary)
		}
	}
}

func printCommandHelp(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: cts %s %s\n\n%s\n", c.name, c.args, c.summary)
	global := map[string]bool{"url": true, "token-file": true, "config": true}
	var own, common []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if global[f.Name] {
			common = append(common, f)
		} else {
			own = append(own, f)
		}
	})
	for _, sec := range []struct {
		title string
		flags []*flag.Flag
	}{{"flags", own}, {"global flags", common}} {
		if len(sec.flags) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", sec.title)
		for _, f := range sec.flags {
			typ, usage := flag.UnquoteUsage(f)
			if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
				typ = ""
			}
			line := "  --" + f.Name
			if len(f.Name) == 1 {
				line = "  -" + f.Name
			}
			if typ != "" {
				line += " " + strings.ToUpper(typ)
			}
			if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" && f.DefValue != "0s" {
				usage += fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(w, "%s\n      %s\n", line, usage)
		}
	}
}

func help(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printHelp(stdout)
		return exitOK
	}
	cmd, _ := findCommand(args)
	if cmd == nil {
		if groups()[args[0]] {
			printGroupHelp(stdout, args[0])
			return exitOK
		}
		fmt.Fprintf(stderr, "cts help: unknown command %q\n", strings.Join(args, " "))
		return exitUsage
	}
	fs := flag.NewFlagSet("cts "+cmd.name, flag.ContinueOnError)
	addGlobalFlags(fs, &globalFlags{})
	cmd.setup(fs)
	printCommandHelp(stdout, cmd, fs)
	return exitOK
}
