package images_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/devstack"
	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/images"
	"github.com/kbase/cts/coordinator/internal/store"
	"github.com/kbase/cts/test/imagebuild"
)

const digest0 = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func wantCTSErr(t *testing.T, err error, code ctserr.Code, msg string) {
	t.Helper()
	var ce *ctserr.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *ctserr.Error", err, err)
	}
	if ce.Code != code || (msg != "" && ce.Message != msg) {
		t.Fatalf("got code %d message %q,\nwant %d %q", ce.Code, ce.Message, code, msg)
	}
}

func TestParseRef(t *testing.T) {
	cases := []struct {
		in                string
		name, tag, digest string
		msg               string // the 30040 message when the parse must fail; "*" for any
	}{
		{in: "ubuntu", name: "docker.io/library/ubuntu"},
		{in: "  ubuntu:noble-20240827.1 ", name: "docker.io/library/ubuntu", tag: "noble-20240827.1"},
		{in: "kbase/x", name: "docker.io/kbase/x"},
		{in: "docker.io/ubuntu", name: "docker.io/library/ubuntu"},
		{in: "index.docker.io/kbase/x:1", name: "docker.io/kbase/x", tag: "1"},
		{in: "ghcr.io/kbase/collections:tag", name: "ghcr.io/kbase/collections", tag: "tag"},
		{in: "ghcr.io/kbaseapps/kb_quast:pr-36", name: "ghcr.io/kbaseapps/kb_quast", tag: "pr-36"},
		{in: "localhost:5000/foo", name: "localhost:5000/foo"},
		{in: "127.0.0.1:5000/test/img:V1_x", name: "127.0.0.1:5000/test/img", tag: "V1_x"},
		{in: "ubuntu@" + digest0, name: "docker.io/library/ubuntu", digest: digest0},
		{in: "ghcr.io/kbase/x:t@" + digest0, name: "ghcr.io/kbase/x", tag: "t", digest: digest0},
		{in: "a__b/c-d--e/f.g", name: "docker.io/a__b/c-d--e/f.g"},
		{in: "", msg: "No image name provided"},
		{in: "   ", msg: "No image name provided"},
		{in: "ubuntu$", msg: "Illegal character in image name 'ubuntu$': '$'"},
		{in: "ubuntu:no ble", msg: "Illegal character in image name 'ubuntu:no ble': ' '"},
		{in: "ubüntu", msg: "Illegal character in image name 'ubüntu': 'ü'"},
		{in: "Ubuntu", msg: "*"},
		{in: "kbase/Foo:1", msg: "*"},
		{in: "a//b", msg: "Unable to parse image name 'a//b': invalid repository path component ''"},
		{in: "-bad", msg: "Unable to parse image name '-bad': invalid repository path component '-bad'"},
		{in: "bad-/x", msg: "Unable to parse image name 'bad-/x': invalid repository path component 'bad-'"},
		{in: "ubuntu:-bad", msg: "Unable to parse image name 'ubuntu:-bad': invalid tag '-bad'"},
		{in: "ubuntu:", msg: "*"},
		{in: ":tag", msg: "*"},
		{in: "ubuntu@", msg: "*"},
		{in: "ubuntu@sha256:abc", msg: "*"},
		{in: "@" + digest0, msg: "*"},
		{in: "a@" + digest0 + "@" + digest0, msg: "*"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			r, err := images.ParseRef(tc.in)
			if tc.msg != "" {
				want := tc.msg
				if want == "*" {
					want = ""
				}
				wantCTSErr(t, err, ctserr.CodeImageNameParse, want)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r != (images.Ref{Name: tc.name, Tag: tc.tag, Digest: tc.digest}) {
				t.Fatalf("ParseRef = %+v, want %s %q %q", r, tc.name, tc.tag, tc.digest)
			}
		})
	}
}

// fixture is a registry, a store and a manager over both.
type fixture struct {
	reg *devstack.Registry
	st  *store.Store
	m   *images.Manager
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	reg := devstack.TestRegistry(t)
	mg := devstack.TestMongo(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	st, err := store.New(ctx, store.Config{URI: mg.URI(), Database: "images_test", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	return &fixture{reg: reg, st: st, m: images.NewManager(st)}
}

// push builds an image whose content is marker and pushes it to repo:tag on the registry; it
// returns the manifest digest.
func (f *fixture) push(t *testing.T, repoTag, marker string, entrypoint []string) string {
	t.Helper()
	img, err := imagebuild.Build([]imagebuild.File{{Path: "/marker", Data: []byte(marker)}}, entrypoint, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := imagebuild.Push(t.Context(), img, f.reg.Host()+"/"+repoTag)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestRegisterResolveDelete(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	host := f.reg.Host()
	tool := host + "/test/tool"
	ep := []string{"/bin/tool", "--flag"}

	d1 := f.push(t, "test/tool:1", "one", ep)
	d2 := f.push(t, "test/tool:2", "two", ep)
	dLatest := f.push(t, "test/tool:latest", "latest", ep)
	dPinned := f.push(t, "test/tool:pinned", "pinned", ep)
	dPinned2 := f.push(t, "test/tool:pinned2", "pinned2", ep)
	dNoEP := f.push(t, "test/noep:1", "noep", nil)

	type reg struct {
		name  string
		id    string
		want  images.Image // Name, Tag, Digest, Entrypoint
		code  ctserr.Code
		msg   string
		urls  []string
		usage string
	}
	steps := []reg{
		{name: "tagged", id: tool + ":1", want: images.Image{Name: tool, Tag: "1", Digest: d1},
			urls: []string{"https://example.org/tool"}, usage: "use it"},
		// An untagged name is the registry's "latest": recorded as tag latest, so a job naming
		// the bare name (which resolves to tag latest) finds it.
		{name: "untagged means latest", id: tool, want: images.Image{Name: tool, Tag: "latest", Digest: dLatest}},
		{name: "digest pinned has no tag", id: tool + "@" + dPinned, want: images.Image{Name: tool, Digest: dPinned}},
		// Any number of digest-only registrations of one name coexist (the BUG? of §4.2).
		{name: "second digest pinned of the name", id: tool + "@" + dPinned2, want: images.Image{Name: tool, Digest: dPinned2}},
		{name: "tag and matching digest", id: tool + ":2@" + d2, want: images.Image{Name: tool, Tag: "2", Digest: d2}},
		{name: "tag and wrong digest", id: tool + ":1@" + d2, code: ctserr.CodeImageFetch,
			msg: "The digest for image " + tool + ":1, " + d1 + ", does not equal the expected digest, " + d2},
		{name: "no entrypoint", id: host + "/test/noep:1", code: ctserr.CodeNoEntrypoint,
			msg: "Image " + host + "/test/noep:1@" + dNoEP + " does not have an entrypoint"},
		{name: "duplicate digest under another tag", id: tool + "@" + d1, code: ctserr.CodeImageDigestExists,
			msg: "The digest " + d1 + " for image " + tool + " already exists in the system"},
		{name: "unknown tag", id: tool + ":nope", code: ctserr.CodeImageFetch},
		{name: "unknown repository", id: host + "/test/none:1", code: ctserr.CodeImageFetch},
		{name: "unknown digest", id: tool + "@" + digest0, code: ctserr.CodeImageFetch},
		{name: "unparseable", id: tool + ":-x", code: ctserr.CodeImageNameParse},
	}
	for _, st := range steps {
		t.Run("register "+st.name, func(t *testing.T) {
			before := time.Now().Add(-time.Second)
			got, err := f.m.Register(ctx, "admin1", st.id, images.Registration{URLs: st.urls, UsageNotes: st.usage})
			if st.code != 0 {
				wantCTSErr(t, err, st.code, st.msg)
				if got != nil {
					t.Fatalf("a refused registration returned %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Name != st.want.Name || got.Tag != st.want.Tag || got.Digest != st.want.Digest ||
				!reflect.DeepEqual(got.Entrypoint, ep) || got.RegisteredBy != "admin1" || got.RegisteredOn.Before(before) ||
				!reflect.DeepEqual(got.URLs, st.urls) || got.UsageNotes != st.usage {
				t.Fatalf("Register = %+v, want %+v", got, st.want)
			}
			// What was returned is what was stored.
			stored, err := f.m.Resolve(ctx, got.Name+"@"+got.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(stored, got) {
				t.Fatalf("stored %+v\nreturned %+v", stored, got)
			}
		})
	}

	t.Run("the tag moves in the registry", func(t *testing.T) {
		moved := f.push(t, "test/tool:1", "one-moved", ep)
		if moved == d1 {
			t.Fatal("the tag did not move")
		}
		// A job naming tool:1 still runs what the admin approved.
		img, err := f.m.Resolve(ctx, tool+":1")
		if err != nil {
			t.Fatal(err)
		}
		if img.Digest != d1 {
			t.Fatalf("Resolve(tool:1) = %s, want the registered %s", img.Digest, d1)
		}
		// Registering the moved tag again collides with the recorded tag.
		_, err = f.m.Register(ctx, "admin1", tool+":1", images.Registration{})
		wantCTSErr(t, err, ctserr.CodeImageTagExists, "The tag 1 for image "+tool+" already exists in the system")
	})

	t.Run("latest moves in the registry", func(t *testing.T) {
		f.push(t, "test/tool:latest", "latest-moved", ep)
		// A second registration of the bare name is a registration of tag latest: refused while
		// another digest holds that tag, so the bare name never becomes ambiguous. The admin
		// deletes the old one first, or registers the new digest pinned.
		_, err := f.m.Register(ctx, "admin1", tool, images.Registration{})
		wantCTSErr(t, err, ctserr.CodeImageTagExists, "The tag latest for image "+tool+" already exists in the system")
		img, err := f.m.Resolve(ctx, tool)
		if err != nil || img.Digest != dLatest {
			t.Fatalf("Resolve(bare name) = %+v, %v; want %s", img, err, dLatest)
		}
	})

	t.Run("resolve", func(t *testing.T) {
		for _, tc := range []struct {
			ref, digest string
			code        ctserr.Code
			msg         string
		}{
			{ref: tool + ":1", digest: d1},
			{ref: tool + ":latest", digest: dLatest},
			{ref: tool, digest: dLatest},
			{ref: tool + "@" + dPinned, digest: dPinned},
			// With a digest the tag is ignored.
			{ref: tool + ":whatever@" + dPinned2, digest: dPinned2},
			{ref: tool + ":3", code: ctserr.CodeNoSuchImage, msg: "No image " + tool + " with tag '3' exists in the system."},
			{ref: tool + "@" + digest0, code: ctserr.CodeNoSuchImage, msg: "No image " + tool + " with digest " + digest0 + " exists in the system."},
			{ref: "ubuntu", code: ctserr.CodeNoSuchImage, msg: "No image docker.io/library/ubuntu with tag 'latest' exists in the system."},
			{ref: "Ubuntu", code: ctserr.CodeImageNameParse},
		} {
			t.Run(tc.ref, func(t *testing.T) {
				img, err := f.m.Resolve(ctx, tc.ref)
				if tc.code != 0 {
					wantCTSErr(t, err, tc.code, tc.msg)
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if img.Digest != tc.digest {
					t.Fatalf("Resolve(%s) = %s, want %s", tc.ref, img.Digest, tc.digest)
				}
			})
		}
	})

	t.Run("list", func(t *testing.T) {
		imgs, err := f.m.List(ctx, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(imgs) != 5 {
			t.Fatalf("List returned %d images, want the 5 registered", len(imgs))
		}
	})

	t.Run("delete", func(t *testing.T) {
		if err := f.m.Delete(ctx, tool+":2"); err != nil {
			t.Fatal(err)
		}
		_, err := f.m.Resolve(ctx, tool+"@"+d2)
		wantCTSErr(t, err, ctserr.CodeNoSuchImage, "")
		err = f.m.Delete(ctx, tool+":2")
		wantCTSErr(t, err, ctserr.CodeNoSuchImage, "No image "+tool+" with tag '2' exists in the system.")
		// Deleting by digest; the other pinned digest stays.
		if err := f.m.Delete(ctx, tool+"@"+dPinned); err != nil {
			t.Fatal(err)
		}
		if _, err := f.m.Resolve(ctx, tool+"@"+dPinned2); err != nil {
			t.Fatal(err)
		}
		// After deleting latest, the moved latest can be registered by the bare name.
		if err := f.m.Delete(ctx, tool); err != nil {
			t.Fatal(err)
		}
		img, err := f.m.Register(ctx, "admin2", tool, images.Registration{})
		if err != nil {
			t.Fatal(err)
		}
		if img.Tag != "latest" || img.Digest == dLatest {
			t.Fatalf("re-registered latest = %+v", img)
		}
	})
}

func TestRegisterFetchMessages(t *testing.T) {
	f := newFixture(t)
	host := f.reg.Host()
	f.push(t, "test/tool:1", "one", []string{"/x"})
	for _, tc := range []struct {
		id, want string
	}{
		{host + "/test/none:1", "Failed to fetch image " + host + "/test/none:1: Image was not found on the host"},
		// A tag is looked up with HEAD: a 404 without an error body.
		{host + "/test/tool:2", "Failed to fetch image " + host + "/test/tool:2: Image was not found on the host"},
		{host + "/test/tool@" + digest0, "Failed to fetch image " + host + "/test/tool@" + digest0 + ": Manifest is unknown"},
		// An unreachable registry is reported too (as the CTS does with crane's error).
		{"127.0.0.1:1/test/x:1", "Failed to fetch image 127.0.0.1:1/test/x:1: Get "},
	} {
		t.Run(tc.id, func(t *testing.T) {
			_, err := f.m.Register(t.Context(), "a", tc.id, images.Registration{})
			var ce *ctserr.Error
			if !errors.As(err, &ce) || ce.Code != ctserr.CodeImageFetch || !strings.HasPrefix(ce.Message, tc.want) {
				t.Fatalf("Register = %v, want 30050 starting %q", err, tc.want)
			}
		})
	}
}

// TestRegisterRefdataAndFromImage covers the first steps of a registration: usage fields and refdata
// settings copied from from_image (the request wins), the mount point rules, and the check
// that the reference data exists.
func TestRegisterRefdataAndFromImage(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	host := f.reg.Host()
	f.push(t, "test/ref:1", "one", []string{"/x"})
	f.push(t, "test/ref:2", "two", []string{"/x"})
	f.push(t, "test/ref:3", "three", []string{"/x"})
	known := map[string]bool{"rd1": true}
	exists := func(_ context.Context, id string) error {
		if !known[id] {
			return ctserr.New(ctserr.CodeNoSuchRefdata, "No reference data with ID '%s' exists", id)
		}
		return nil
	}

	_, err := f.m.Register(ctx, "admin", host+"/test/ref:1", images.Registration{RefdataID: "rd1"})
	wantCTSErr(t, err, ctserr.CodeUnsupportedOperation, "Reference data is not available in this service")
	f.m.SetRefdata(exists)

	for _, tc := range []struct {
		name string
		reg  images.Registration
		code ctserr.Code
		msg  string
	}{
		{"mount point without refdata", images.Registration{DefaultRefdataMountPoint: "/ref"},
			ctserr.CodeIllegalParameter, "If a refdata mount point is provided a refdata ID must be provided."},
		{"relative mount point", images.Registration{RefdataID: "rd1", DefaultRefdataMountPoint: "ref"},
			ctserr.CodeIllegalParameter, `The refdata mount point "ref" must be an absolute path matching ^/(?:[\w.-]+/)*[\w.-]+/?$`},
		{"unknown refdata", images.Registration{RefdataID: "nope"}, ctserr.CodeNoSuchRefdata, "No reference data with ID 'nope' exists"},
		{"bad url", images.Registration{URLs: []string{"ftp://x"}}, ctserr.CodeIllegalParameter, `Illegal url "ftp://x": an absolute http or https URL is required`},
		{"unknown from_image", images.Registration{FromImage: host + "/test/none:1"}, ctserr.CodeNoSuchImage, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.m.Register(ctx, "admin", host+"/test/ref:1", tc.reg)
			wantCTSErr(t, err, tc.code, tc.msg)
		})
	}

	first, err := f.m.Register(ctx, "admin", host+"/test/ref:1", images.Registration{
		RefdataID: "rd1", DefaultRefdataMountPoint: "/refdata", URLs: []string{"https://example.org/doc"}, UsageNotes: "notes",
	})
	if err != nil {
		t.Fatal(err)
	}
	if first.RefdataID != "rd1" || first.DefaultRefdataMountPoint != "/refdata" {
		t.Fatalf("registered %+v", first)
	}
	// from_image copies what the request leaves unset.
	second, err := f.m.Register(ctx, "admin", host+"/test/ref:2", images.Registration{FromImage: host + "/test/ref:1", UsageNotes: "mine"})
	if err != nil {
		t.Fatal(err)
	}
	if second.RefdataID != "rd1" || second.DefaultRefdataMountPoint != "/refdata" || second.UsageNotes != "mine" ||
		len(second.URLs) != 1 || second.URLs[0] != "https://example.org/doc" {
		t.Errorf("from_image copy: %+v", second)
	}
	// Stored and resolved as registered.
	got, err := f.m.Resolve(ctx, host+"/test/ref:2")
	if err != nil || got.RefdataID != "rd1" || got.DefaultRefdataMountPoint != "/refdata" {
		t.Errorf("resolved %+v, %v", got, err)
	}
}

// TestRegisterPrivateRegistry: a registry that needs credentials refuses an anonymous
// registration (30050, "Unauthorized"), and the standard Docker configuration (DOCKER_CONFIG)
// supplies them.
func TestRegisterPrivateRegistry(t *testing.T) {
	reg := devstack.TestRegistry(t, devstack.WithBasicAuth("alice", "s3cret"))
	mg := devstack.TestMongo(t)
	st, err := store.New(t.Context(), store.Config{URI: mg.URI(), Database: "images_private", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	m := images.NewManager(st)
	ref := reg.Host() + "/private/tool:1"

	// Push with credentials (the registry refuses anonymous pushes too).
	img, err := imagebuild.Build([]imagebuild.File{{Path: "/marker", Data: []byte("private")}}, []string{"/x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))
	cfg := fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, reg.Host(), auth)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", t.TempDir()) // no credentials yet
	if _, err := imagebuild.Push(t.Context(), img, ref); err == nil {
		t.Fatal("anonymous push to the private registry succeeded")
	}
	_, err = m.Register(t.Context(), "admin", ref, images.Registration{})
	var ce *ctserr.Error
	if !errors.As(err, &ce) || ce.Code != ctserr.CodeImageFetch || !strings.Contains(ce.Message, "Unauthorized") {
		t.Fatalf("anonymous registration: %v", err)
	}

	t.Setenv("DOCKER_CONFIG", dir)
	digest, err := imagebuild.Push(t.Context(), img, ref)
	if err != nil {
		t.Fatalf("push with credentials: %v", err)
	}
	got, err := m.Register(t.Context(), "admin", ref, images.Registration{})
	if err != nil {
		t.Fatalf("registration with credentials: %v", err)
	}
	if got.Digest != digest {
		t.Errorf("registered digest %s, pushed %s", got.Digest, digest)
	}
}
