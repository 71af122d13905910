// Package access decides which S3 paths a user's jobs may read and write. It owns the site's
// access rules: the container log folder, which no job may read or write; the CTS
// allowed_s3_paths, which every user may read and write; and per-user read and write folders
// whose path may hold a "{user}" placeholder ("cts-data/{user}/" gives alice
// "cts-data/alice/"). It answers with *ctserr.Error values (403, app code 20010) that name the
// path and say where the user may read or write instead.
//
// The rules:
//
//   - The log folder is never readable or writable by jobs, whatever else is configured: an
//     input inside it, an output folder or reference data overlapping it is refused.
//   - With no allowed, read or write folders configured the site is open, as the Python
//     service without allowed_s3_paths: a job may read and write anywhere the service's S3
//     credentials can (the submit then proves the output folder writable with a test object).
//   - Otherwise a user may write below an allowed folder or one of their write folders, and
//     read below those and their read folders; nothing else.
//
// Folders compare by whole path segments (s3path.Dir): "cts-data/al/" does not contain
// "cts-data/alice/x", and paths with "." or ".." segments never reach this package (s3path
// refuses them).
//
// The package performs no I/O: it does not know whether S3 itself would allow an access (the
// store's own policies may be stricter, see docs/admins.md) and does not decide who is an
// admin.
package access

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/shared/s3path"
)

// Placeholder is replaced by the user's name in read and write folders.
const Placeholder = "{user}"

// Config is a site's access configuration.
type Config struct {
	// LogDir is the container log folder ("bucket/prefix/").
	LogDir string
	// Allowed are folders every user may read and write (the CTS allowed_s3_paths).
	Allowed []string
	// Read are folders users may read, Write folders they may read and write; either may hold
	// Placeholder as one whole path segment of the key.
	Read, Write []string
}

// Perm is what a grant allows.
type Perm string

// The permissions, as GET /whoami reports them.
const (
	PermRead  Perm = "read"
	PermWrite Perm = "write"
)

// Grant is a folder a user may read or write.
type Grant struct {
	Path string
	Perm Perm
}

// Rules are a site's compiled access rules. They are immutable and safe for concurrent use.
type Rules struct {
	logDir  s3path.Dir
	hasLog  bool
	allowed []s3path.Dir
	read    []pattern
	write   []pattern
}

// pattern is a configured folder, possibly with the placeholder.
type pattern struct {
	raw      string // normalised, with the placeholder
	perUser  bool
	fixed    s3path.Dir // the folder itself when !perUser
	template string     // raw with the placeholder, when perUser
}

// userNameRE is the KBase auth2 user name rule; a name outside it never gets a per-user
// folder (it could otherwise inject path segments).
var userNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,99}$`)

// New validates cfg and compiles it. Every problem is reported, joined.
func New(cfg Config) (*Rules, error) {
	r := &Rules{}
	var errs []error
	if strings.TrimSpace(cfg.LogDir) != "" {
		d, err := s3path.ParseDir(cfg.LogDir)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("log folder %q: %w", cfg.LogDir, err))
		case d.Prefix == "":
			errs = append(errs, fmt.Errorf("log folder %q: must include a key, not a whole bucket", cfg.LogDir))
		default:
			r.logDir, r.hasLog = d, true
		}
	}
	for i, a := range cfg.Allowed {
		d, err := s3path.ParseDir(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("allowed path %d %q: %w", i, a, err))
			continue
		}
		if r.hasLog && d.Overlaps(r.logDir) {
			errs = append(errs, fmt.Errorf("allowed path %q overlaps the log folder %s", d, r.logDir))
			continue
		}
		r.allowed = append(r.allowed, d)
	}
	for _, list := range []struct {
		name string
		in   []string
		out  *[]pattern
	}{{"read path", cfg.Read, &r.read}, {"write path", cfg.Write, &r.write}} {
		for i, raw := range list.in {
			p, err := compile(raw)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s %d %q: %w", list.name, i, raw, err))
				continue
			}
			if !p.perUser && r.hasLog && p.fixed.Overlaps(r.logDir) {
				errs = append(errs, fmt.Errorf("%s %q overlaps the log folder %s", list.name, p.raw, r.logDir))
				continue
			}
			*list.out = append(*list.out, p)
		}
	}
	return r, errors.Join(errs...)
}

// compile checks one read or write folder: a valid folder once the placeholder is replaced,
// with the placeholder at most once and as a whole segment of the key.
func compile(raw string) (pattern, error) {
	n := strings.Count(raw, Placeholder)
	if n == 0 {
		d, err := s3path.ParseDir(raw)
		if err != nil {
			return pattern{}, err
		}
		return pattern{raw: d.String(), fixed: d}, nil
	}
	if n > 1 {
		return pattern{}, fmt.Errorf("%s may appear once", Placeholder)
	}
	bucket, key, _ := strings.Cut(strings.TrimLeft(raw, " \t"), "/")
	if strings.Contains(bucket, Placeholder) {
		return pattern{}, fmt.Errorf("%s may not be in the bucket name", Placeholder)
	}
	// Validate with a stand-in name: every user name is made of characters valid in a key.
	d, err := s3path.ParseDir(strings.Replace(raw, Placeholder, "u", 1))
	if err != nil {
		return pattern{}, err
	}
	segs := strings.Split(strings.TrimSuffix(key, "/"), "/")
	whole := false
	for _, s := range segs {
		if s == Placeholder {
			whole = true
		}
	}
	if !whole {
		return pattern{}, fmt.Errorf("%s must be a whole path segment, as in bucket/%s/", Placeholder, Placeholder)
	}
	tmpl := d.Bucket + "/" + strings.Join(segs, "/") + "/"
	return pattern{raw: tmpl, perUser: true, template: tmpl}, nil
}

// dir returns the folder a pattern gives user, and false when it gives them none.
func (p pattern) dir(user string) (s3path.Dir, bool) {
	if !p.perUser {
		return p.fixed, true
	}
	if !userNameRE.MatchString(user) {
		return s3path.Dir{}, false
	}
	d, err := s3path.ParseDir(strings.Replace(p.template, Placeholder, user, 1))
	return d, err == nil
}

// Restricted reports whether any allowed, read or write folder is configured (otherwise the
// site is open, see the package comment).
func (r *Rules) Restricted() bool {
	return len(r.allowed) > 0 || len(r.read) > 0 || len(r.write) > 0
}

// LogDir returns the log folder ("" when none is configured).
func (r *Rules) LogDir() string {
	if !r.hasLog {
		return ""
	}
	return r.logDir.String()
}

// writable returns the folders user may write, in configuration order.
func (r *Rules) writable(user string) []s3path.Dir {
	out := append([]s3path.Dir(nil), r.allowed...)
	for _, p := range r.write {
		if d, ok := p.dir(user); ok {
			out = append(out, d)
		}
	}
	return out
}

// readable returns the folders user may read, in configuration order.
func (r *Rules) readable(user string) []s3path.Dir {
	out := r.writable(user)
	for _, p := range r.read {
		if d, ok := p.dir(user); ok {
			out = append(out, d)
		}
	}
	return out
}

// Grants lists the folders user may read or write, writable first, as GET /whoami shows them.
// It is empty for an open site.
func (r *Rules) Grants(user string) []Grant {
	var out []Grant
	seen := map[string]bool{}
	add := func(ds []s3path.Dir, perm Perm) {
		for _, d := range ds {
			if s := d.String(); !seen[s] {
				seen[s] = true
				out = append(out, Grant{Path: s, Perm: perm})
			}
		}
	}
	add(r.writable(user), PermWrite)
	add(r.readable(user), PermRead)
	return out
}

// Scope is one user's view of the rules, with their folders resolved once: use it to check
// many paths (the inputs of a job).
type Scope struct {
	r        *Rules
	user     string
	readable []s3path.Dir
	writable []s3path.Dir
}

// For returns user's Scope.
func (r *Rules) For(user string) *Scope {
	return &Scope{r: r, user: user, readable: r.readable(user), writable: r.writable(user)}
}

// CanRead is For(user).CanRead(p).
func (r *Rules) CanRead(user string, p s3path.Path) error { return r.For(user).CanRead(p) }

// CanReadDir is For(user).CanReadDir(d).
func (r *Rules) CanReadDir(user string, d s3path.Dir) error { return r.For(user).CanReadDir(d) }

// CanWrite is For(user).CanWrite(d).
func (r *Rules) CanWrite(user string, d s3path.Dir) error { return r.For(user).CanWrite(d) }

// CanRead returns nil when the user's jobs may read the object p, else a *ctserr.Error (403,
// 20010) naming p and the folders the user may read.
func (s *Scope) CanRead(p s3path.Path) error {
	r := s.r
	if r.hasLog && r.logDir.Contains(p) {
		return ctserr.New(ctserr.CodeS3PathInaccessible,
			"The S3 path '%s' is in the container log folder %s, which jobs may not read", p, r.logDir)
	}
	if !r.Restricted() {
		return nil
	}
	for _, d := range s.readable {
		if d.Contains(p) {
			return nil
		}
	}
	return ctserr.New(ctserr.CodeS3PathInaccessible, "User %s may not read the S3 path '%s': %s",
		s.user, p, where(s.readable, "read"))
}

// CanReadDir returns nil when the user may read everything below d (listing it, say), else a
// *ctserr.Error as CanRead's. A folder that overlaps the log folder is refused.
func (s *Scope) CanReadDir(d s3path.Dir) error {
	r := s.r
	if r.hasLog && d.Overlaps(r.logDir) {
		return ctserr.New(ctserr.CodeS3PathInaccessible,
			"The S3 folder %s overlaps the container log folder %s, which jobs may not read", d, r.logDir)
	}
	if !r.Restricted() {
		return nil
	}
	for _, g := range s.readable {
		if g.ContainsDir(d) {
			return nil
		}
	}
	return ctserr.New(ctserr.CodeS3PathInaccessible, "User %s may not read the S3 folder %s: %s", s.user, d, where(s.readable, "read"))
}

// CanWrite returns nil when the user's jobs may write below d, else a *ctserr.Error (403,
// 20010). A folder that overlaps the log folder is always refused: outputs could then replace
// a container log.
func (s *Scope) CanWrite(d s3path.Dir) error {
	r := s.r
	if r.hasLog && d.Overlaps(r.logDir) {
		return ctserr.New(ctserr.CodeS3PathInaccessible,
			"Jobs may not write to the log directory %s: the output folder %s overlaps it", r.logDir, d)
	}
	if !r.Restricted() {
		return nil
	}
	for _, g := range s.writable {
		if g.ContainsDir(d) {
			return nil
		}
	}
	return ctserr.New(ctserr.CodeS3PathInaccessible, "User %s may not write to the S3 folder %s: %s", s.user, d, where(s.writable, "write"))
}

// where tells the user where they may act instead.
func where(ds []s3path.Dir, verb string) string {
	if len(ds) == 0 {
		return "this service gives you no S3 folder to " + verb + "; ask its administrators"
	}
	names := make([]string, len(ds))
	for i, d := range ds {
		names[i] = d.String()
	}
	return "jobs may " + verb + " only below " + strings.Join(names, ", ") + " (GET /whoami lists them)"
}
