package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/kbase/cts/coordinator/client"
)

// refdataCommands are the reference data commands: list and get for everyone, the rest for
// admins.
func refdataCommands() []*command {
	return []*command{
		{name: "refdata list", args: "[--json]", summary: "list the registered reference data",
			setup: func(fs *flag.FlagSet) func(*cli, []string) error {
				asJSON := jsonFlag(fs)
				return noArgs(false, func(c *cli, cl *client.Client) error {
					rds, err := cl.Refdata(c.ctx)
					if err != nil {
						return err
					}
					return printRefdataList(c, rds, *asJSON)
				})
			}},
		{name: "refdata get", args: "ID [--admin]", summary: "print reference data as JSON, with its staging state at each site",
			setup: func(fs *flag.FlagSet) func(*cli, []string) error {
				admin := fs.Bool("admin", false, "the admin view, with each site's admin error and cleaned flag (admins)")
				return func(c *cli, args []string) error {
					id, err := oneArg(args, "reference data ID")
					if err != nil {
						return err
					}
					cl, err := c.client(*admin)
					if err != nil {
						return err
					}
					return c.printResult(cl.RefdataByID(c.ctx, id, *admin))
				}
			}},
		{name: "refdata path", args: "S3PATH [--json]", summary: "list the reference data of one S3 file (bucket/key)",
			setup: func(fs *flag.FlagSet) func(*cli, []string) error {
				asJSON := jsonFlag(fs)
				return withArg("S3 path", false, func(c *cli, cl *client.Client, p string) error {
					rds, err := cl.RefdataByPath(c.ctx, p)
					if err != nil {
						return err
					}
					return printRefdataList(c, rds, *asJSON)
				})
			}},
		{name: "refdata register", args: "S3PATH --crc64nvme CRC [--unpack]",
			summary: "register an S3 file as reference data and stage it at every active site (admins)",
			setup: func(fs *flag.FlagSet) func(*cli, []string) error {
				crc := fs.String("crc64nvme", "", "the file's CRC64/NVME, base64 (12 characters; must match S3's)")
				unpack := fs.Bool("unpack", false, "unpack the archive (.tar.gz, .tgz, .tar.zst, .tar, .gz, .zst)")
				return func(c *cli, args []string) error {
					p, err := oneArg(args, "S3 path")
					if err != nil {
						return err
					}
					if *crc == "" {
						return usagef("--crc64nvme is required")
					}
					cl, err := c.client(true)
					if err != nil {
						return err
					}
					return c.printResult(cl.RegisterRefdata(c.ctx, p, *crc, *unpack))
				}
			}},
		{name: "refdata recover", args: "ID SITE", summary: "stage reference data again at a site (admins)",
			setup: func(fs *flag.FlagSet) func(*cli, []string) error {
				return withTwoArgs("reference data ID and site", true, func(c *cli, cl *client.Client, id, site string) error {
					return c.done(cl.RecoverRefdata(c.ctx, id, site), "reference data %s: staging again at %s\n", id, site)
				})
			}},
		{name: "refdata clean", args: "ID SITE [--force]", summary: "clean up a site's staging task (admins)",
			setup: func(fs *flag.FlagSet) func(*cli, []string) error {
				force := fs.Bool("force", false, "clean even when the staging has not ended")
				return withTwoArgs("reference data ID and site", true, func(c *cli, cl *client.Client, id, site string) error {
					return c.done(cl.CleanRefdata(c.ctx, id, site, *force), "reference data %s: cleaned at %s\n", id, site)
				})
			}},
	}
}

func twoArgs(args []string, what string) (string, string, error) {
	if len(args) != 2 || args[0] == "" || args[1] == "" {
		return "", "", usagef("want the %s, got %d arguments", what, len(args))
	}
	return args[0], args[1], nil
}

// printRefdataList prints reference data as a table (one row per record, the state at each
// site) or as {"data": [...]}.
func printRefdataList(c *cli, rds []client.Refdata, asJSON bool) error {
	if asJSON {
		return printJSONList(c.stdout, "data", rds)
	}
	return printTable(c.stdout, "ID\tFILE\tUNPACK\tSITES\tREGISTERED BY\tREGISTERED ON", rds, func(w io.Writer, rd client.Refdata) {
		var sites []string
		for _, s := range rd.Statuses {
			sites = append(sites, s.Cluster+":"+string(s.State))
		}
		st := "-"
		if len(sites) > 0 {
			st = strings.Join(sites, ",")
		}
		fmt.Fprintf(w, "%s\t%s\t%v\t%s\t%s\t%s\n", rd.ID, rd.File, rd.Unpack, st, rd.RegisteredBy, rd.RegisteredOn)
	})
}
