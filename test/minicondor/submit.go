package minicondor

import (
	"bufio"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Description is a parsed submit description, before macro expansion per proc.
type Description struct {
	// Commands maps each lower-cased submit command to its raw value.
	Commands map[string]string
	// Attrs maps each "+Attr" to its raw value.
	Attrs map[string]string
	// QueueVar is the variable of `queue VAR from (...)`, "" for `queue N`.
	QueueVar string
	// Items holds one value per proc.
	Items []string
}

// commandAttrs maps the submit commands the simulator understands to their ClassAd attribute
// and value type ('s' string, 'i' integer, 'b' boolean, 'e' expression).
var commandAttrs = map[string]struct {
	attr string
	typ  byte
}{
	"executable":              {"Cmd", 's'},
	"arguments":               {"Args", 's'},
	"environment":             {"Environment", 's'},
	"transfer_input_files":    {"TransferInput", 's'},
	"transfer_executable":     {"TransferExecutable", 'b'},
	"transfer_output_files":   {"TransferOutput", 's'},
	"should_transfer_files":   {"ShouldTransferFiles", 's'},
	"when_to_transfer_output": {"WhenToTransferOutput", 's'},
	"initialdir":              {"Iwd", 's'},
	"output":                  {"Out", 's'},
	"error":                   {"Err", 's'},
	"log":                     {"UserLog", 's'},
	"request_cpus":            {"RequestCpus", 'i'},
	"request_memory":          {"RequestMemory", 'i'},
	"request_disk":            {"RequestDisk", 'i'},
	"batch_name":              {"JobBatchName", 's'},
	"on_exit_hold":            {"OnExitHold", 'e'},
	"want_graceful_removal":   {"WantGracefulRemoval", 'b'},
	"job_max_vacate_time":     {"JobMaxVacateTime", 'i'},
	"allowed_job_duration":    {"AllowedJobDuration", 'i'},
	"requirements":            {"Requirements", 'e'},
	"concurrency_limits":      {"ConcurrencyLimits", 's'},
	"accounting_group":        {"AcctGroup", 's'},
	"accounting_group_user":   {"AcctGroupUser", 's'},
	"periodic_remove":         {"PeriodicRemove", 'e'},
	"periodic_hold":           {"PeriodicHold", 'e'},
	"getenv":                  {"GetEnv", 'b'},
	"universe":                {"JobUniverseName", 's'},
}

var macroRE = regexp.MustCompile(`\$\(([^()]*)\)`)

// ParseDescription parses a submit description.
func ParseDescription(text string) (*Description, error) {
	d := &Description{Commands: map[string]string{}, Attrs: map[string]string{}}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	var lines []string
	var cont strings.Builder
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), " \t\r")
		if strings.HasSuffix(line, "\\") {
			cont.WriteString(strings.TrimSuffix(line, "\\"))
			continue
		}
		cont.WriteString(line)
		lines = append(lines, cont.String())
		cont.Reset()
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	queued := false
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if queued {
			return nil, fmt.Errorf("line %q: only one queue statement is simulated, at the end", line)
		}
		low := strings.ToLower(line)
		if low == "queue" || strings.HasPrefix(low, "queue ") || strings.HasPrefix(low, "queue\t") {
			queued = true
			rest := strings.TrimSpace(line[len("queue"):])
			switch {
			case rest == "":
				d.Items = []string{"0"}
			case regexp.MustCompile(`^\d+$`).MatchString(rest):
				n, _ := strconv.Atoi(rest)
				if n < 1 {
					return nil, fmt.Errorf("queue %d: nothing to queue", n)
				}
				d.Items = make([]string, n)
			default:
				m := regexp.MustCompile(`^(?i)([A-Za-z_][A-Za-z0-9_]*)\s+from\s*\((.*)$`).FindStringSubmatch(rest)
				if m == nil {
					return nil, fmt.Errorf("queue statement %q is not simulated", line)
				}
				d.QueueVar = m[1]
				body := m[2]
				for !strings.Contains(body, ")") {
					i++
					if i >= len(lines) {
						return nil, fmt.Errorf("queue %s from (: missing ')'", d.QueueVar)
					}
					body += "\n" + lines[i]
				}
				body = body[:strings.Index(body, ")")]
				for _, it := range strings.Split(body, "\n") {
					if it = strings.TrimSpace(it); it != "" {
						d.Items = append(d.Items, it)
					}
				}
				if len(d.Items) == 0 {
					return nil, fmt.Errorf("queue %s from (): no items", d.QueueVar)
				}
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %q is not 'command = value'", line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if strings.HasPrefix(k, "+") || strings.HasPrefix(strings.ToLower(k), "my.") {
			name := strings.TrimPrefix(k, "+")
			if strings.HasPrefix(strings.ToLower(name), "my.") {
				name = name[3:]
			}
			d.Attrs[name] = v
			continue
		}
		lk := strings.ToLower(k)
		if _, known := commandAttrs[lk]; !known {
			return nil, fmt.Errorf("submit command %q is not simulated", k)
		}
		d.Commands[lk] = v
	}
	if !queued {
		return nil, fmt.Errorf("no queue statement")
	}
	if d.Commands["executable"] == "" {
		return nil, fmt.Errorf("no executable")
	}
	if u := d.Commands["universe"]; u != "" && !strings.EqualFold(u, "vanilla") {
		return nil, fmt.Errorf("universe %q is not simulated", u)
	}
	if g := d.Commands["getenv"]; g != "" && !strings.EqualFold(g, "false") {
		return nil, fmt.Errorf("getenv = %s is not simulated", g)
	}
	return d, nil
}

// expand replaces the macros of one proc.
func (d *Description) expand(v string, cluster int64, proc int) (string, error) {
	var bad error
	out := macroRE.ReplaceAllStringFunc(v, func(m string) string {
		name := m[2 : len(m)-1]
		switch strings.ToLower(name) {
		case "clusterid", "cluster":
			return strconv.FormatInt(cluster, 10)
		case "procid", "process":
			return strconv.Itoa(proc)
		case "dollar":
			return "$"
		}
		if d.QueueVar != "" && strings.EqualFold(name, d.QueueVar) {
			return d.Items[proc]
		}
		bad = fmt.Errorf("macro %s is not simulated", m)
		return m
	})
	return out, bad
}

// parseLiteral turns a ClassAd literal into its value; anything else is an Expression.
func parseLiteral(v string) any {
	switch strings.ToLower(v) {
	case "true":
		return true
	case "false":
		return false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return n
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		return f
	}
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		if s, err := strconv.Unquote(v); err == nil {
			return s
		}
		return v[1 : len(v)-1]
	}
	return Expression(v)
}

// ads builds the ClassAds of every proc of the description for cluster; cwd is where
// condor_submit ran.
func (d *Description) ads(cluster int64, batchName, cwd string, now time.Time) ([]Ad, error) {
	owner := "unknown"
	if u, err := user.Current(); err == nil {
		owner = u.Username
	}
	var out []Ad
	for proc := range d.Items {
		ad := Ad{
			"ClusterId": cluster, "ProcId": int64(proc), "JobStatus": int64(StatusIdle),
			"QDate": now.Unix(), "EnteredCurrentStatus": now.Unix(), "Owner": owner, "User": owner + "@minicondor",
			"JobUniverse": int64(5), "CondorVersion": "$CondorVersion: 25.0.0 (mini-condor) $",
			"CondorPlatform": "$CondorPlatform: mini-condor $", "Iwd": cwd,
			"TransferExecutable": true, "WantGracefulRemoval": false, "NumJobStarts": int64(0),
			"JobRunCount": int64(0), "MyType": "Job", "TargetType": "Machine",
			// condor_submit's definition: the shadow only updates ResidentSetSize (KiB).
			"MemoryUsage": Expression("((ResidentSetSize + 1023) / 1024)"),
		}
		for k, raw := range d.Commands {
			v, err := d.expand(raw, cluster, proc)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			spec := commandAttrs[k]
			switch spec.typ {
			case 's':
				ad[spec.attr] = v
			case 'e':
				ad[spec.attr] = Expression(v)
			case 'b':
				switch strings.ToLower(v) {
				case "true", "yes":
					ad[spec.attr] = true
				case "false", "no":
					ad[spec.attr] = false
				default:
					return nil, fmt.Errorf("%s = %q is not a boolean", k, v)
				}
			case 'i':
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("%s = %q: only plain integers are simulated", k, v)
				}
				ad[spec.attr] = n
			}
		}
		for k, raw := range d.Attrs {
			v, err := d.expand(raw, cluster, proc)
			if err != nil {
				return nil, fmt.Errorf("+%s: %w", k, err)
			}
			ad[k] = parseLiteral(v)
		}
		if batchName != "" {
			ad["JobBatchName"] = batchName
		}
		iwd := ad.String("Iwd")
		if !filepath.IsAbs(iwd) {
			iwd = filepath.Join(cwd, iwd)
			ad["Iwd"] = iwd
		}
		if st, err := os.Stat(iwd); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("initialdir %q is not a directory", iwd)
		}
		if cmd := ad.String("Cmd"); !filepath.IsAbs(cmd) {
			ad["Cmd"] = filepath.Join(cwd, cmd)
		}
		if env := ad.String("Environment"); env != "" {
			if _, err := ParseEnvironment(env); err != nil {
				return nil, err
			}
		}
		if args := ad.String("Args"); args != "" {
			if _, err := SplitNewSyntax(args); err != nil {
				return nil, fmt.Errorf("arguments: %w", err)
			}
		}
		if h := ad.ExprText("OnExitHold"); h != "" {
			if _, err := onExitHold(h, nil); err != nil {
				return nil, err
			}
		}
		out = append(out, ad)
	}
	return out, nil
}

// onExitHold evaluates the simulated forms of on_exit_hold; exitCode is nil when the process
// was killed by a signal (ExitCode undefined).
func onExitHold(expr string, exitCode *int) (bool, error) {
	switch strings.Join(strings.Fields(strings.ToLower(expr)), " ") {
	case "true":
		return true, nil
	case "false", "":
		return false, nil
	case "exitcode =!= 0":
		return exitCode == nil || *exitCode != 0, nil
	case "exitcode != 0":
		return exitCode != nil && *exitCode != 0, nil
	}
	return false, fmt.Errorf("on_exit_hold %q is not simulated (only ExitCode =!= 0, ExitCode != 0, true, false)", expr)
}
