package store_test

import (
	"reflect"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/kbase/cts/coordinator/internal/images"
)

func TestImages(t *testing.T) {
	s, db := newStore(t)
	ctx := t.Context()
	img := func(name, digest, tag string) images.Image {
		return images.Image{Name: name, Digest: digest, Tag: tag, Entrypoint: []string{"run"},
			RegisteredBy: "admin", RegisteredOn: t0}
	}
	steps := []struct {
		name    string
		img     images.Image
		wantErr error
	}{
		{"tagged", img("repo/a", "sha256:1", "v1"), nil},
		{"untagged", img("repo/a", "sha256:2", ""), nil},
		{"second untagged digest of the name", img("repo/a", "sha256:3", ""), nil},
		{"same digest other name", img("repo/b", "sha256:1", "v1"), nil},
		{"duplicate digest", img("repo/a", "sha256:1", "v9"), images.ErrDigestExists},
		{"duplicate digest untagged", img("repo/a", "sha256:2", ""), images.ErrDigestExists},
		{"duplicate tag", img("repo/a", "sha256:4", "v1"), images.ErrTagExists},
		{"tag moved to untagged digest is refused", img("repo/a", "sha256:5", "v1"), images.ErrTagExists},
	}
	for _, st := range steps {
		t.Run("save "+st.name, func(t *testing.T) {
			isErr(t, s.SaveImage(ctx, st.img), st.wantErr)
		})
	}

	t.Run("untagged images have no tag field", func(t *testing.T) {
		var raw bson.Raw
		if err := db.Collection("images").FindOne(ctx, bson.D{{Key: "digest", Value: "sha256:2"}}).Decode(&raw); err != nil {
			t.Fatal(err)
		}
		if _, err := raw.LookupErr("tag"); err == nil {
			t.Fatalf("untagged image stored with a tag field: %v", raw)
		}
	})

	want := img("repo/a", "sha256:1", "v1")
	want.RegisteredOn = want.RegisteredOn.Truncate(1e6)
	for _, c := range []struct {
		name               string
		qname, digest, tag string
		want               *images.Image
		wantErr            error
	}{
		{"by digest", "repo/a", "sha256:1", "", &want, nil},
		{"by tag", "repo/a", "", "v1", &want, nil},
		{"digest wins over tag", "repo/a", "sha256:1", "other", &want, nil},
		{"missing digest", "repo/a", "sha256:9", "", nil, images.ErrNotFound},
		{"missing tag", "repo/a", "", "v9", nil, images.ErrNotFound},
		{"no tag no digest", "repo/a", "", "", nil, images.ErrNotFound},
		{"other name", "repo/c", "sha256:1", "", nil, images.ErrNotFound},
	} {
		t.Run("get "+c.name, func(t *testing.T) {
			got, err := s.GetImage(ctx, c.qname, c.digest, c.tag)
			isErr(t, err, c.wantErr)
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("GetImage = %+v, want %+v", got, c.want)
			}
		})
	}

	t.Run("list", func(t *testing.T) {
		got, err := s.ListImages(ctx, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		var refs []string
		for _, i := range got {
			refs = append(refs, i.Name+"@"+i.Digest+":"+i.Tag)
		}
		wantRefs := []string{"repo/a@sha256:1:v1", "repo/a@sha256:2:", "repo/a@sha256:3:", "repo/b@sha256:1:v1"}
		if !reflect.DeepEqual(refs, wantRefs) {
			t.Fatalf("ListImages = %v, want %v", refs, wantRefs)
		}
		got, err = s.ListImages(ctx, 0, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 {
			t.Fatalf("ListImages(2) returned %d", len(got))
		}
		// Pages: skip 3 of the 4 leaves the last one.
		got, err = s.ListImages(ctx, 3, 2)
		if err != nil || len(got) != 1 || got[0].Name+"@"+got[0].Digest != "repo/b@sha256:1" {
			t.Fatalf("ListImages(skip 3) = %+v, %v", got, err)
		}
	})

	t.Run("delete", func(t *testing.T) {
		isErr(t, s.DeleteImage(ctx, "repo/a", "", "v1"), nil)
		isErr(t, s.DeleteImage(ctx, "repo/a", "", "v1"), images.ErrNotFound)
		isErr(t, s.DeleteImage(ctx, "repo/a", "sha256:2", ""), nil)
		isErr(t, s.DeleteImage(ctx, "repo/a", "sha256:2", ""), images.ErrNotFound)
		_, err := s.GetImage(ctx, "repo/a", "sha256:1", "")
		isErr(t, err, images.ErrNotFound)
		// The tag and the digest are free again.
		isErr(t, s.SaveImage(ctx, img("repo/a", "sha256:1", "v1")), nil)
	})
}
