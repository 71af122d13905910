package main

import (
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/kbase/cts/coordinator/client"
)

func imageCommands() []*command {
	return []*command{
		{name: "images list", args: "[--json]", summary: "list the registered images",
			setup: func(fs *flag.FlagSet) func(*cli, []string) error {
				asJSON := fs.Bool("json", false, "print JSON")
				return func(c *cli, args []string) error {
					if len(args) != 0 {
						return usagef("unexpected arguments %q", args)
					}
					cl, err := c.client(false)
					if err != nil {
						return err
					}
					imgs, err := cl.Images(c.ctx)
					if err != nil {
						return err
					}
					if *asJSON {
						if imgs == nil {
							imgs = []client.Image{}
						}
						return printJSON(c.stdout, map[string]any{"data": imgs})
					}
					tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "NAME\tTAG\tDIGEST\tREGISTERED BY\tREGISTERED ON")
					for _, im := range imgs {
						tag := im.Tag
						if tag == "" {
							tag = "-"
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", im.Name, tag, shortDigest(im.Digest), im.RegisteredBy, formatTime(im.RegisteredOn))
					}
					return tw.Flush()
				}
			}},
		{name: "images get", args: "REF", summary: "print a registered image as JSON (REF: name, name:tag or name@sha256:...)",
			setup: func(fs *flag.FlagSet) func(*cli, []string) error {
				return func(c *cli, args []string) error {
					ref, err := oneArg(args, "image reference")
					if err != nil {
						return err
					}
					cl, err := c.client(false)
					if err != nil {
						return err
					}
					im, err := cl.Image(c.ctx, ref)
					if err != nil {
						return err
					}
					return printJSON(c.stdout, im)
				}
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
				return func(c *cli, args []string) error {
					ref, err := oneArg(args, "image reference")
					if err != nil {
						return err
					}
					cl, err := c.client(true)
					if err != nil {
						return err
					}
					im, err := cl.RegisterImage(c.ctx, ref, client.ImageRegistration{UsageNotes: *notes, URLs: urls,
						FromImage: *from, RefdataID: *refdataID, DefaultRefdataMountPoint: *mount})
					if err != nil {
						return err
					}
					return printJSON(c.stdout, im)
				}
			}},
		{name: "images delete", args: "REF", summary: "delete a registered image (admins)",
			setup: func(fs *flag.FlagSet) func(*cli, []string) error {
				return func(c *cli, args []string) error {
					ref, err := oneArg(args, "image reference")
					if err != nil {
						return err
					}
					cl, err := c.client(true)
					if err != nil {
						return err
					}
					if err := cl.DeleteImage(c.ctx, ref); err != nil {
						return err
					}
					fmt.Fprintf(c.stdout, "deleted image %s\n", ref)
					return nil
				}
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
				return func(c *cli, args []string) error {
					id, err := oneArg(args, "job ID")
					if err != nil {
						return err
					}
					cl, err := c.client(true)
					if err != nil {
						return err
					}
					j, err := cl.AdminJob(c.ctx, id)
					if err != nil {
						return err
					}
					return printJSON(c.stdout, j)
				}
			}},
		{name: "admin cancel", args: "JOB", summary: "cancel any job (admins)",
			setup: func(fs *flag.FlagSet) func(*cli, []string) error {
				return func(c *cli, args []string) error {
					id, err := oneArg(args, "job ID")
					if err != nil {
						return err
					}
					cl, err := c.client(true)
					if err != nil {
						return err
					}
					if err := cl.AdminCancel(c.ctx, id); err != nil {
						return err
					}
					fmt.Fprintf(c.stdout, "job %s canceling\n", id)
					return nil
				}
			}},
	}
}

func infoCommands() []*command {
	return []*command{
		{name: "sites", args: "[--json]", summary: "list the compute sites and their limits",
			setup: func(fs *flag.FlagSet) func(*cli, []string) error {
				asJSON := fs.Bool("json", false, "print JSON")
				return func(c *cli, args []string) error {
					if len(args) != 0 {
						return usagef("unexpected arguments %q", args)
					}
					cl, err := c.client(false)
					if err != nil {
						return err
					}
					sites, err := cl.Sites(c.ctx)
					if err != nil {
						return err
					}
					if *asJSON {
						if sites == nil {
							sites = []client.Site{}
						}
						return printJSON(c.stdout, map[string]any{"sites": sites})
					}
					tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "CLUSTER\tACTIVE\tAVAILABLE\tNODES\tCPUS/NODE\tMEMORY/NODE\tMAX RUNTIME\tNOTES")
					for _, s := range sites {
						nodes := "-"
						if s.Nodes != nil {
							nodes = fmt.Sprint(*s.Nodes)
						}
						avail := fmt.Sprint(s.Available)
						if !s.Available && s.UnavailableReason != nil {
							avail += " (" + *s.UnavailableReason + ")"
						}
						fmt.Fprintf(tw, "%s\t%v\t%s\t%s\t%d\t%g GB\t%g min\t%s\n", s.Cluster, s.Active, avail, nodes,
							s.CPUsPerNode, s.MemoryPerNodeGB, s.MaxRuntimeMin, strings.Join(s.Notes, "; "))
					}
					return tw.Flush()
				}
			}},
		{name: "whoami", args: "[--json]", summary: "show the token's user, roles and the S3 paths you may write to",
			setup: func(fs *flag.FlagSet) func(*cli, []string) error {
				asJSON := fs.Bool("json", false, "print JSON")
				return func(c *cli, args []string) error {
					if len(args) != 0 {
						return usagef("unexpected arguments %q", args)
					}
					cl, err := c.client(true)
					if err != nil {
						return err
					}
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
						fmt.Fprintln(c.stdout, "outputs: anywhere the service may write")
					}
					for _, p := range me.AllowedPaths {
						fmt.Fprintf(c.stdout, "outputs: %s (%s)\n", p.Path, p.Perm)
					}
					return nil
				}
			}},
	}
}
