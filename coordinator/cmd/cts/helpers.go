package main

import (
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/kbase/cts/coordinator/client"
)

// jsonFlag declares the --json flag most listing commands take.
func jsonFlag(fs *flag.FlagSet) *bool { return fs.Bool("json", false, "print JSON") }

// noArgs returns a command body that takes no positional arguments, builds a client (needToken
// as for cli.client) and runs fn with it.
func noArgs(needToken bool, fn func(c *cli, cl *client.Client) error) func(*cli, []string) error {
	return func(c *cli, args []string) error {
		if len(args) != 0 {
			return usagef("unexpected arguments %q", args)
		}
		cl, err := c.client(needToken)
		if err != nil {
			return err
		}
		return fn(c, cl)
	}
}

// withArg returns a command body that takes exactly one positional argument (what names it in
// the usage error), builds a client (needToken as for cli.client) and runs fn with both.
func withArg(what string, needToken bool, fn func(c *cli, cl *client.Client, arg string) error) func(*cli, []string) error {
	return func(c *cli, args []string) error {
		arg, err := oneArg(args, what)
		if err != nil {
			return err
		}
		cl, err := c.client(needToken)
		if err != nil {
			return err
		}
		return fn(c, cl, arg)
	}
}

// withTwoArgs is withArg for commands that take exactly two positional arguments.
func withTwoArgs(what string, needToken bool, fn func(c *cli, cl *client.Client, a, b string) error) func(*cli, []string) error {
	return func(c *cli, args []string) error {
		a, b, err := twoArgs(args, what)
		if err != nil {
			return err
		}
		cl, err := c.client(needToken)
		if err != nil {
			return err
		}
		return fn(c, cl, a, b)
	}
}

// printResult prints the result of a client call as JSON, or returns the call's error.
func (c *cli) printResult(v any, err error) error {
	if err != nil {
		return err
	}
	return printJSON(c.stdout, v)
}

// done prints a confirmation line after a client call that returns only an error, or returns
// that error.
func (c *cli) done(err error, format string, a ...any) error {
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, format, a...)
	return nil
}

// printJSONList prints items as {key: [...]}, an empty list rather than null when there are
// none.
func printJSONList[T any](w io.Writer, key string, items []T) error {
	if items == nil {
		items = []T{}
	}
	return printJSON(w, map[string]any{key: items})
}

// printTable prints a tab-separated header line and one row per item, aligned in columns.
func printTable[T any](w io.Writer, header string, items []T, row func(w io.Writer, item T)) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, it := range items {
		row(tw, it)
	}
	return tw.Flush()
}
