package minicondor

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Tools are the names the binary answers to.
var Tools = []string{"condor_submit", "condor_q", "condor_history", "condor_rm"}

// Main runs the tool named by args[0] (or by args[1] when args[0] is not a tool name) and
// returns its exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "minicondor: no arguments")
		return 2
	}
	tool := filepath.Base(args[0])
	rest := args[1:]
	if !isTool(tool) && tool != ShadowCommand {
		if len(rest) == 0 {
			fmt.Fprintf(stderr, "usage: minicondor {%s} ARGS...\n", strings.Join(Tools, "|"))
			return 2
		}
		tool, rest = rest[0], rest[1:]
	}
	st, err := OpenState(os.Getenv(EnvDir))
	if err != nil {
		fmt.Fprintf(stderr, "ERROR: %v\n", err)
		return 1
	}
	if tool == ShadowCommand {
		if len(rest) != 1 {
			fmt.Fprintln(stderr, "shadow: want one proc id")
			return 2
		}
		if err := RunShadow(st, rest[0]); err != nil {
			fmt.Fprintf(stderr, "shadow %s: %v\n", rest[0], err)
			return 1
		}
		return 0
	}
	if !isTool(tool) {
		fmt.Fprintf(stderr, "minicondor: unknown tool %q\n", tool)
		return 2
	}
	// Fault injection: a file fail/<tool> in the state directory makes the tool fail as if
	// the schedd could not be reached.
	if _, err := os.Stat(filepath.Join(st.Dir, "fail", tool)); err == nil {
		fmt.Fprintln(stderr, "ERROR: Failed to connect to local queue manager\nCEDAR:6001:Failed to connect to <127.0.0.1:9618>")
		return 1
	}
	switch tool {
	case "condor_submit":
		err = submitCmd(st, rest, stdout)
	case "condor_q":
		err = queryCmd(st, "queue", rest, stdout)
	case "condor_history":
		err = queryCmd(st, "history", rest, stdout)
	case "condor_rm":
		err = rmCmd(st, rest, stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "ERROR: %v\n", err)
		return 1
	}
	return 0
}

func isTool(name string) bool {
	for _, t := range Tools {
		if t == name {
			return true
		}
	}
	return false
}

// Install symlinks the minicondor binary at bin under the four tool names in dir and returns
// the tool paths by name.
func Install(bin, dir string) (map[string]string, error) {
	out := map[string]string{}
	for _, t := range Tools {
		p := filepath.Join(dir, t)
		if err := os.Symlink(bin, p); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("install %s: %w", t, err)
		}
		out[t] = p
	}
	return out, nil
}

func submitCmd(st *State, args []string, stdout io.Writer) error {
	terse, batch, file := false, "", ""
	for i := 0; i < len(args); i++ {
		switch a := args[i]; a {
		case "-terse":
			terse = true
		case "-batch-name":
			if i+1 >= len(args) {
				return errors.New("-batch-name needs a value")
			}
			i++
			batch = args[i]
		default:
			if strings.HasPrefix(a, "-") || file != "" {
				return fmt.Errorf("condor_submit option %q is not simulated", a)
			}
			file = a
		}
	}
	if file == "" {
		return errors.New("no submit file")
	}
	text, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read submit file: %w", err)
	}
	d, err := ParseDescription(string(text))
	if err != nil {
		return fmt.Errorf("submit file %s: %w", file, err)
	}
	cwd, err := os.Getwd()
	if err != nil {
		return err
	}
	unlock, err := st.Lock()
	if err != nil {
		return err
	}
	cluster, err := st.nextCluster()
	if err != nil {
		unlock()
		return err
	}
	ads, err := d.ads(cluster, batch, cwd, time.Now())
	if err == nil {
		for _, ad := range ads {
			if err = st.writeQueue(ad); err != nil {
				break
			}
		}
	}
	unlock()
	if err != nil {
		return err
	}
	for _, ad := range ads {
		if err := spawnShadow(st, ad.ID()); err != nil {
			return fmt.Errorf("start shadow of %s: %w", ad.ID(), err)
		}
	}
	if terse {
		fmt.Fprintf(stdout, "%d.0 - %d.%d\n", cluster, cluster, len(ads)-1)
	} else {
		fmt.Fprintf(stdout, "Submitting job(s)%s\n%d job(s) submitted to cluster %d.\n", strings.Repeat(".", len(ads)), len(ads), cluster)
	}
	return nil
}

// selection is the jobs a query or condor_rm names.
type selection struct {
	expr *Expr
	ids  []string // "c" or "c.p"
}

func (s selection) match(ad Ad) bool {
	if s.expr != nil && !s.expr.Matches(ad) {
		return false
	}
	if len(s.ids) == 0 {
		return true
	}
	c, _ := ad.Int("ClusterId")
	for _, id := range s.ids {
		if id == ad.ID() || id == strconv.FormatInt(c, 10) {
			return true
		}
	}
	return false
}

func parseIDs(a string) (string, error) {
	c, p, hasProc := strings.Cut(a, ".")
	if _, err := strconv.ParseInt(c, 10, 64); err != nil {
		return "", fmt.Errorf("%q is not a job id", a)
	}
	if hasProc {
		if _, err := strconv.ParseInt(p, 10, 64); err != nil {
			return "", fmt.Errorf("%q is not a job id", a)
		}
	}
	return a, nil
}

func queryCmd(st *State, table string, args []string, stdout io.Writer) error {
	var sel selection
	jsonOut := false
	var attrs []string
	limit := -1
	for i := 0; i < len(args); i++ {
		a := args[i]
		next := func() (string, error) {
			if i+1 >= len(args) {
				return "", fmt.Errorf("%s needs a value", a)
			}
			i++
			return args[i], nil
		}
		switch a {
		case "-json":
			jsonOut = true
		case "-allusers":
		case "-constraint":
			v, err := next()
			if err != nil {
				return err
			}
			if sel.expr, err = ParseExpr(v); err != nil {
				return err
			}
		case "-attributes":
			v, err := next()
			if err != nil {
				return err
			}
			for _, x := range strings.Split(v, ",") {
				if x = strings.TrimSpace(x); x != "" {
					attrs = append(attrs, x)
				}
			}
		case "-limit", "-match":
			v, err := next()
			if err != nil {
				return err
			}
			if limit, err = strconv.Atoi(v); err != nil {
				return fmt.Errorf("%s %q: %w", a, v, err)
			}
		default:
			if strings.HasPrefix(a, "-") {
				return fmt.Errorf("option %q is not simulated", a)
			}
			id, err := parseIDs(a)
			if err != nil {
				return err
			}
			sel.ids = append(sel.ids, id)
		}
	}
	ads, err := st.list(table)
	if err != nil {
		return err
	}
	var out []Ad
	for _, ad := range ads {
		if !sel.match(ad) {
			continue
		}
		if len(attrs) > 0 {
			p := Ad{}
			for _, want := range attrs {
				for k, v := range ad {
					if strings.EqualFold(k, want) {
						p[k] = v
					}
				}
			}
			ad = p
		}
		out = append(out, ad)
		if limit >= 0 && len(out) >= limit {
			break
		}
	}
	if !jsonOut {
		for _, ad := range out {
			s, _ := ad.Int("JobStatus")
			fmt.Fprintf(stdout, "%s %d %s\n", ad.ID(), s, ad.String("Cmd"))
		}
		return nil
	}
	b, err := MarshalAds(out) // nothing at all when nothing matches, as the real tools
	if err != nil {
		return err
	}
	_, err = stdout.Write(b)
	return err
}

func rmCmd(st *State, args []string, stdout io.Writer) error {
	var sel selection
	reason := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch a {
		case "-reason", "-constraint":
			if i+1 >= len(args) {
				return fmt.Errorf("%s needs a value", a)
			}
			i++
			if a == "-reason" {
				reason = args[i]
				continue
			}
			var err error
			if sel.expr, err = ParseExpr(args[i]); err != nil {
				return err
			}
		default:
			if strings.HasPrefix(a, "-") {
				return fmt.Errorf("option %q is not simulated", a)
			}
			id, err := parseIDs(a)
			if err != nil {
				return err
			}
			sel.ids = append(sel.ids, id)
		}
	}
	if sel.expr == nil && len(sel.ids) == 0 {
		return errors.New("nothing to remove: name clusters or -constraint")
	}
	unlock, err := st.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	ads, err := st.list("queue")
	if err != nil {
		return err
	}
	now := time.Now()
	n := 0
	for _, ad := range ads {
		if !sel.match(ad) {
			continue
		}
		status, _ := ad.Int("JobStatus")
		if status == StatusRemoved {
			n++ // already being removed
			continue
		}
		if reason == "" {
			reason = "via condor_rm (by user " + ad.String("Owner") + ")"
		}
		ad["RemoveReason"] = reason
		setStatus(ad, StatusRemoved, now)
		if _, running := ad.Int("MiniPid"); running {
			err = st.writeQueue(ad) // the shadow stops the process and moves it
		} else {
			err = st.toHistory(ad) // idle or held: nothing runs
		}
		if err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		// The real condor_rm's words, capital and full stop included: callers match them.
		if len(sel.ids) > 0 {
			return fmt.Errorf("Couldn't find/remove all jobs in cluster %s.", strings.Join(sel.ids, ", ")) //lint:ignore ST1005 condor_rm's message
		}
		return errors.New("Couldn't find/remove all jobs matching constraint") //lint:ignore ST1005 condor_rm's message
	}
	for _, id := range sel.ids {
		fmt.Fprintf(stdout, "All jobs in cluster %s have been marked for removal\n", id)
	}
	if len(sel.ids) == 0 {
		fmt.Fprintln(stdout, "All jobs matching constraint have been marked for removal")
	}
	return nil
}
