package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/kbase/cts/coordinator/client"
)

func imageCommands() []*command {
	return []*command{
		{name: "images list", args: "[--json]", summary: "list the registered images",
			setup: func(fs *flag.FlagSet) func(*cli, []string) error {
				asJSON := jsonFlag(fs)
				return noArgs(false, func(c *cli, cl *client.Client) error {
					imgs, err := cl.Images(c.ctx)
					if err != nil {
						return err
					}
					if *asJSON {
						return printJSONList(c.stdout, "data", imgs)
					}
					return printTable(c.stdout, "NAME\tTAG\tDIGEST\tREGISTERED BY\tREGISTERED ON", imgs, func(w io.Writer, im client.Image) {
						tag := im.Tag
						if tag == "" {
							tag = "-"
						}
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", im.Name, tag, shortDigest(im.Digest), im.RegisteredBy, formatTime(im.RegisteredOn.Time))
					})
				})
			}},
		{name: "images get", args: "REF", summary: "print a registered image as JSON (REF: name, name:tag or name@sha256:...)",
			setup: func(fs *flag.FlagSet) func(*cli, []string) error {
				return withArg("image reference", false, func(c *cli, cl *client.Client, ref string) error {
					return c.printResult(cl.Image(c.ctx, ref))
				})
			}},
		{name: "images register", args: "REF [--usage-notes TEXT] [--info-url URL]... [--from-image REF] [--refdata-id ID] [--refdata-mount-point PATH]",
			summary: "register an image (admins): jobs then run its digest",
			setup: func(fs *flag.FlagSet) func(*cli, []string) error {
				notes := fs.String("usage-notes", "", "how to use the image")
				var urls listFlag
				fs.Var(&urls, "info-url", "a URL with information about the image (repeatable)")
				from := fs.String("from-image", "", "copy the usage notes, URLs and reference data settings of this registered image where not given")
				refdataID := fs.String("refdata-id", "", "the reference data the image needs (cts refdata list)")
				mount := fs.String("refdata-mount-point", "", "where jobs see the reference data unless they say otherwise (an absolute path)")
				return withArg("image reference", true, func(c *cli, cl *client.Client, ref string) error {
					return c.printResult(cl.RegisterImage(c.ctx, ref, client.ImageRegistration{UsageNotes: *notes, URLs: urls,
						FromImage: *from, RefdataID: *refdataID, DefaultRefdataMountPoint: *mount}))
				})
			}},
		{name: "images delete", args: "REF", summary: "delete a registered image (admins)",
			setup: func(fs *flag.FlagSet) func(*cli, []string) error {
				return withArg("image reference", true, func(c *cli, cl *client.Client, ref string) error {
					return c.done(cl.DeleteImage(c.ctx, ref), "deleted image %s\n", ref)
				})
			}},
	}
}

func shortDigest(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}

func adminCommands() []*command {
	return []*command{
		{name: "admin jobs", args: "[--user U] [FLAGS]", summary: "list any user's jobs (admins)",
			setup: func(fs *flag.FlagSet) func(*cli, []string) error {
				lf := &listFlags{}
				lf.register(fs, true)
				return func(c *cli, args []string) error { return listJobs(c, lf, args, true) }
			}},
		{name: "admin job", args: "JOB", summary: "print any job with its admin details as JSON (admins)",
			setup: func(fs *flag.FlagSet) func(*cli, []string) error {
				return withArg("job ID", true, func(c *cli, cl *client.Client, id string) error {
					return c.printResult(cl.AdminJob(c.ctx, id))
				})
			}},
		{name: "admin cancel", args: "JOB", summary: "cancel any job (admins)",
			setup: func(fs *flag.FlagSet) func(*cli, []string) error {
				return withArg("job ID", true, func(c *cli, cl *client.Client, id string) error {
					return c.done(cl.AdminCancel(c.ctx, id), "job %s canceling\n", id)
				})
			}},
	}
}

func infoCommands() []*command {
	return []*command{
		{name: "sites", args: "[--json]", summary: "list the compute sites and their limits",
			setup: func(fs *flag.FlagSet) func(*cli, []string) error {
				asJSON := jsonFlag(fs)
				return noArgs(false, func(c *cli, cl *client.Client) error {
					sites, err := cl.Sites(c.ctx)
					if err != nil {
						return err
					}
					if *asJSON {
						return printJSONList(c.stdout, "sites", sites)
					}
					return printTable(c.stdout, "CLUSTER\tACTIVE\tAVAILABLE\tNODES\tCPUS/NODE\tMEMORY/NODE\tMAX RUNTIME\tNOTES", sites, func(w io.Writer, s client.Site) {
						nodes := "-"
						if s.Nodes != nil {
							nodes = fmt.Sprint(*s.Nodes)
						}
						avail := fmt.Sprint(s.Available)
						if !s.Available && s.UnavailableReason != nil {
							avail += " (" + *s.UnavailableReason + ")"
						}
						fmt.Fprintf(w, "%s\t%v\t%s\t%s\t%d\t%g GB\t%g min\t%s\n", s.Cluster, s.Active, avail, nodes,
							s.CPUsPerNode, s.MemoryPerNodeGB, s.MaxRuntimeMin, strings.Join(s.Notes, "; "))
					})
				})
			}},
		{name: "whoami", args: "[--json]", summary: "show the token's user, roles and the S3 paths you may write to",
			setup: func(fs *flag.FlagSet) func(*cli, []string) error {
				asJSON := jsonFlag(fs)
				return noArgs(true, func(c *cli, cl *client.Client) error {
					me, err := cl.WhoAmI(c.ctx)
					if err != nil {
						return err
					}
					if *asJSON {
						return printJSON(c.stdout, me)
					}
					roles := "-"
					if len(me.Roles) > 0 {
						roles = strings.Join(me.Roles, ", ")
					}
					fmt.Fprintf(c.stdout, "user:    %s\nroles:   %s\nservice: %s\n", me.User, roles, cl.URL())
					if len(me.AllowedPaths) == 0 {
						fmt.Fprintln(c.stdout, "s3:      anywhere the service can reach, but its container log folder")
					}
					for _, p := range me.AllowedPaths {
						perm := "inputs only"
						if p.Perm == "write" {
							perm = "inputs and outputs"
						}
						fmt.Fprintf(c.stdout, "s3:      %s (%s)\n", p.Path, perm)
					}
					return nil
				})
			}},
	}
}
