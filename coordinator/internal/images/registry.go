package images

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/wire"
	"github.com/kbase/cts/shared/args"
)

// Ref is a parsed image reference: the normalised name (registry host + repository, Docker Hub
// as "docker.io/library/ubuntu"), and the tag and digest when given.
type Ref struct {
	Name, Tag, Digest string
}

func (r Ref) String() string {
	s := r.Name
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest
	}
	return s
}

// ParseRef parses and normalises an image reference: name, name:tag,
// name@sha256:..., name:tag@sha256:... . Errors are *ctserr.Error with code 30040.
func ParseRef(s string) (Ref, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Ref{}, ctserr.New(ctserr.CodeImageNameParse, "No image name provided")
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("@:_.-/", c)) {
			return Ref{}, ctserr.New(ctserr.CodeImageNameParse, "Illegal character in image name '%s': '%c'", s, c)
		}
	}
	var r Ref
	rest := s
	if i := strings.Index(s, "@"); i >= 0 {
		d, err := name.NewDigest("example.invalid/x"+s[i:], name.StrictValidation)
		if err != nil {
			return Ref{}, ctserr.New(ctserr.CodeImageNameParse, "Unable to parse image name '%s': %s", s, err)
		}
		r.Digest = d.DigestStr()
		rest = s[:i]
	}
	ref, err := name.ParseReference(rest, name.WeakValidation)
	if err != nil {
		return Ref{}, ctserr.New(ctserr.CodeImageNameParse, "Unable to parse image name '%s': %s", s, err)
	}
	repo := ref.Context()
	// go-containerregistry's weak validation checks only the characters; Docker's grammar
	// (which the CTS's parse_normalized_named applies) also refuses empty, leading or trailing
	// separators in the path ("a//b", "-x", "x-") and a tag starting with '.' or '-'.
	for _, c := range strings.Split(repo.RepositoryStr(), "/") {
		if !pathComponentRE.MatchString(c) {
			return Ref{}, ctserr.New(ctserr.CodeImageNameParse, "Unable to parse image name '%s': invalid repository path component '%s'", s, c)
		}
	}
	if t, ok := ref.(name.Tag); ok && hasExplicitTag(rest) && !tagRE.MatchString(t.TagStr()) {
		return Ref{}, ctserr.New(ctserr.CodeImageNameParse, "Unable to parse image name '%s': invalid tag '%s'", s, t.TagStr())
	}
	host := repo.RegistryStr()
	if host == name.DefaultRegistry {
		host = "docker.io"
	}
	r.Name = host + "/" + repo.RepositoryStr()
	if t, ok := ref.(name.Tag); ok && hasExplicitTag(rest) {
		r.Tag = t.TagStr()
	}
	return r, nil
}

// Docker's reference grammar (distribution/reference): a path component is lower-case
// alphanumerics joined by single separators ('.', '_', "__" or dashes); a tag is a word
// character followed by up to 127 word characters, '.' or '-'.
var (
	pathComponentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	tagRE           = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)
)

// hasExplicitTag reports whether the reference names a tag (a ':' after the last '/').
func hasExplicitTag(s string) bool {
	return strings.Contains(s[strings.LastIndex(s, "/")+1:], ":")
}

// remoteRef is the reference to fetch: Docker Hub names go to its real host.
func (r Ref) remote(withDigest bool) (name.Reference, error) {
	n := r.Name
	if strings.HasPrefix(n, "docker.io/") {
		n = name.DefaultRegistry + strings.TrimPrefix(n, "docker.io")
	}
	if withDigest {
		return name.NewDigest(n + "@" + r.Digest)
	}
	tag := r.Tag
	if tag == "" {
		tag = "latest"
	}
	return name.NewTag(n + ":" + tag)
}

// Registration is the optional body of an image registration.
type Registration = wire.ImageRegistration

// Limits of a registration.
const (
	MaxURLs       = 20
	MaxUsageNotes = 10000
	MaxFromImage  = 1000
)

// RefdataExists checks that reference data is registered: nil, or a *ctserr.Error (40060).
type RefdataExists func(ctx context.Context, id string) error

// SetRefdata makes registrations that name reference data check that it exists. Without it,
// such registrations are refused.
func (m *Manager) SetRefdata(f RefdataExists) { m.refdata = f }

// resolveRegistration applies the first steps of a registration, as the Python service does: fields copied from from_image, the
// mount point rules, and the reference data's existence.
func (m *Manager) resolveRegistration(ctx context.Context, reg Registration) (Registration, error) {
	if len(reg.URLs) > MaxURLs {
		return reg, ctserr.New(ctserr.CodeIllegalParameter, "At most %d urls may be provided", MaxURLs)
	}
	for _, u := range reg.URLs {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return reg, ctserr.New(ctserr.CodeIllegalParameter, "Illegal url %q: an absolute http or https URL is required", u)
		}
	}
	if utf8.RuneCountInString(reg.UsageNotes) > MaxUsageNotes {
		return reg, ctserr.New(ctserr.CodeIllegalParameter, "usage_notes may be at most %d characters", MaxUsageNotes)
	}
	if reg.FromImage != "" {
		if utf8.RuneCountInString(reg.FromImage) > MaxFromImage {
			return reg, ctserr.New(ctserr.CodeIllegalParameter, "from_image may be at most %d characters", MaxFromImage)
		}
		from, err := m.Resolve(ctx, reg.FromImage)
		if err != nil {
			return reg, err
		}
		if reg.URLs == nil {
			reg.URLs = from.URLs
		}
		if reg.UsageNotes == "" {
			reg.UsageNotes = from.UsageNotes
		}
		if reg.RefdataID == "" {
			reg.RefdataID = from.RefdataID
		}
		if reg.DefaultRefdataMountPoint == "" {
			reg.DefaultRefdataMountPoint = from.DefaultRefdataMountPoint
		}
	}
	if reg.DefaultRefdataMountPoint != "" {
		if reg.RefdataID == "" {
			return reg, ctserr.New(ctserr.CodeIllegalParameter, "If a refdata mount point is provided a refdata ID must be provided.")
		}
		if !args.ValidMountPoint(reg.DefaultRefdataMountPoint) {
			return reg, ctserr.New(ctserr.CodeIllegalParameter, "The refdata mount point %q must be an absolute path matching %s", reg.DefaultRefdataMountPoint, args.AbsolutePathPattern)
		}
		if msg := args.MountPointProblem(reg.DefaultRefdataMountPoint); msg != "" {
			return reg, ctserr.New(ctserr.CodeIllegalParameter, "%s", msg)
		}
		reg.DefaultRefdataMountPoint = args.CleanMountPoint(reg.DefaultRefdataMountPoint)
	}
	if reg.RefdataID != "" {
		if m.refdata == nil {
			return reg, ctserr.New(ctserr.CodeUnsupportedOperation, "Reference data is not available in this service")
		}
		if err := m.refdata(ctx, reg.RefdataID); err != nil {
			return reg, err
		}
	}
	return reg, nil
}

// Manager registers and resolves images.
type Manager struct {
	store   Store
	opts    []remote.Option
	now     func() time.Time
	refdata RefdataExists
}

// NewManager returns a Manager. Registry credentials come from the standard Docker
// configuration (authn.DefaultKeychain) unless opts say otherwise.
func NewManager(store Store, opts ...remote.Option) *Manager {
	return &Manager{
		store: store,
		opts:  append([]remote.Option{remote.WithAuthFromKeychain(authn.DefaultKeychain)}, opts...),
		now:   func() time.Time { return time.Now().UTC().Truncate(time.Millisecond) },
	}
}

// Register resolves imageID in its registry (digest and entrypoint) and records it.
func (m *Manager) Register(ctx context.Context, by, imageID string, reg Registration) (*Image, error) {
	r, err := ParseRef(imageID)
	if err != nil {
		return nil, err
	}
	if reg, err = m.resolveRegistration(ctx, reg); err != nil {
		return nil, err
	}
	opts := append([]remote.Option{remote.WithContext(ctx)}, m.opts...)
	if r.Tag != "" || r.Digest == "" {
		tagRef, err := r.remote(false)
		if err != nil {
			return nil, ctserr.New(ctserr.CodeImageNameParse, "Unable to parse image name '%s': %s", imageID, err)
		}
		desc, err := remote.Head(tagRef, opts...)
		if err != nil {
			return nil, fetchErr(r, err)
		}
		if r.Digest != "" && desc.Digest.String() != r.Digest {
			return nil, ctserr.New(ctserr.CodeImageFetch, "The digest for image %s:%s, %s, does not equal the expected digest, %s", r.Name, r.Tag, desc.Digest, r.Digest)
		}
		r.Digest = desc.Digest.String()
		if r.Tag == "" {
			r.Tag = "latest"
		}
	}
	digestRef, err := r.remote(true)
	if err != nil {
		return nil, ctserr.New(ctserr.CodeImageNameParse, "Unable to parse image name '%s': %s", imageID, err)
	}
	img, err := remote.Image(digestRef, opts...)
	if err != nil {
		return nil, fetchErr(r, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fetchErr(r, err)
	}
	if len(cfg.Config.Entrypoint) == 0 {
		return nil, ctserr.New(ctserr.CodeNoEntrypoint, "Image %s does not have an entrypoint", r)
	}
	out := Image{
		Name: r.Name, Digest: r.Digest, Tag: r.Tag, Entrypoint: cfg.Config.Entrypoint,
		RegisteredBy: by, RegisteredOn: m.now(), URLs: reg.URLs, UsageNotes: reg.UsageNotes,
		RefdataID: reg.RefdataID, DefaultRefdataMountPoint: reg.DefaultRefdataMountPoint,
	}
	switch err := m.store.SaveImage(ctx, out); {
	case errors.Is(err, ErrDigestExists):
		return nil, ctserr.New(ctserr.CodeImageDigestExists, "The digest %s for image %s already exists in the system", r.Digest, r.Name)
	case errors.Is(err, ErrTagExists):
		return nil, ctserr.New(ctserr.CodeImageTagExists, "The tag %s for image %s already exists in the system", r.Tag, r.Name)
	case err != nil:
		return nil, fmt.Errorf("save image: %w", err)
	}
	return &out, nil
}

func fetchErr(r Ref, err error) error {
	var te *transport.Error
	msg := err.Error()
	if errors.As(err, &te) {
		switch {
		case te.StatusCode == 401 || te.StatusCode == 403:
			msg = "Unauthorized to access image"
		case te.StatusCode == 404:
			msg = "Image was not found on the host"
		}
		for _, d := range te.Errors {
			if d.Code == transport.ManifestUnknownErrorCode {
				msg = "Manifest is unknown"
			}
		}
	}
	return &ctserr.Error{Code: ctserr.CodeImageFetch, Message: fmt.Sprintf("Failed to fetch image %s: %s", r, msg), Err: err}
}

// Resolve finds the registered image a job names: by digest when one is
// given, else by tag, else by the tag "latest".
func (m *Manager) Resolve(ctx context.Context, ref string) (*Image, error) {
	r, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	tag := r.Tag
	if r.Digest == "" && tag == "" {
		tag = "latest"
	}
	img, err := m.store.GetImage(ctx, r.Name, r.Digest, tag)
	if errors.Is(err, ErrNotFound) {
		if r.Digest != "" {
			return nil, ctserr.New(ctserr.CodeNoSuchImage, "No image %s with digest %s exists in the system.", r.Name, r.Digest)
		}
		return nil, ctserr.New(ctserr.CodeNoSuchImage, "No image %s with tag '%s' exists in the system.", r.Name, tag)
	}
	return img, err
}

// List returns a page of registered images: up to limit after skipping skip, ordered by name
// and digest.
func (m *Manager) List(ctx context.Context, skip, limit int) ([]Image, error) {
	return m.store.ListImages(ctx, skip, limit)
}

// Delete removes the registered image ref resolves to.
func (m *Manager) Delete(ctx context.Context, ref string) error {
	img, err := m.Resolve(ctx, ref)
	if err != nil {
		return err
	}
	return m.store.DeleteImage(ctx, img.Name, img.Digest, "")
}
