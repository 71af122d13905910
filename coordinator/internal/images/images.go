// Package images owns admin-approved container images: registration (resolving a name, tag or
// digest to a digest and entrypoint with go-containerregistry), lookup by jobs, and the
// uniqueness rules of (name, digest) and (name, tag). Jobs always run Name@Digest.
package images

import (
	"context"
	"errors"
	"time"
)

// Image is a registered image (CTS Image model).
type Image struct {
	Name                     string    `bson:"name" json:"name"`
	Digest                   string    `bson:"digest" json:"digest"`
	Tag                      string    `bson:"tag,omitempty" json:"tag,omitempty"`
	Entrypoint               []string  `bson:"entrypoint" json:"entrypoint"`
	RefdataID                string    `bson:"refdata_id,omitempty" json:"refdata_id,omitempty"`
	DefaultRefdataMountPoint string    `bson:"default_refdata_mount_point,omitempty" json:"default_refdata_mount_point,omitempty"`
	RegisteredBy             string    `bson:"registered_by" json:"registered_by"`
	RegisteredOn             time.Time `bson:"registered_on" json:"registered_on"`
	URLs                     []string  `bson:"urls,omitempty" json:"urls,omitempty"`
	UsageNotes               string    `bson:"usage_notes,omitempty" json:"usage_notes,omitempty"`
}

// NameWithDigest is what a job runs: "name@sha256:...".
func (i Image) NameWithDigest() string { return i.Name + "@" + i.Digest }

// Errors of the image store.
var (
	ErrNotFound     = errors.New("image not found")
	ErrDigestExists = errors.New("image digest exists")
	ErrTagExists    = errors.New("image tag exists")
)

// Store persists images. A tag is unique per name only among images that have a tag: any
// number of untagged digests of one name may be stored.
type Store interface {
	// SaveImage inserts img; ErrDigestExists or ErrTagExists on a uniqueness violation.
	SaveImage(ctx context.Context, img Image) error
	// GetImage finds by name and digest when digest is set, else by name and tag;
	// ErrNotFound if none.
	GetImage(ctx context.Context, name, digest, tag string) (*Image, error)
	// ListImages returns up to limit images in a stable order (name, digest), after skipping
	// skip of them: a page.
	ListImages(ctx context.Context, skip, limit int) ([]Image, error)
	// DeleteImage deletes the image found as in GetImage; ErrNotFound if none.
	DeleteImage(ctx context.Context, name, digest, tag string) error
}
