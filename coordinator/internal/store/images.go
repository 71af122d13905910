package store

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/coordinator/internal/images"
)

// imageFilter selects by name and digest when digest is set, else by name and tag.
func imageFilter(name, digest, tag string) bson.D {
	if digest != "" {
		return bson.D{{Key: "name", Value: name}, {Key: "digest", Value: digest}}
	}
	return bson.D{{Key: "name", Value: name}, {Key: "tag", Value: tag}}
}

// SaveImage inserts img (RegisteredOn truncated to the millisecond, UTC). An untagged image is
// stored without a tag field, so any number of untagged digests of one name coexist.
// ErrDigestExists or ErrTagExists on a uniqueness violation.
func (s *Store) SaveImage(ctx context.Context, img images.Image) error {
	img.RegisteredOn = msTime(img.RegisteredOn)
	_, err := s.images.InsertOne(ctx, &img)
	if err == nil {
		return nil
	}
	op := fmt.Sprintf("save image %s@%s", img.Name, img.Digest)
	if !isDuplicateKey(err) {
		return fmt.Errorf("%s: %w", op, err)
	}
	switch duplicateIndex(err) {
	case indexImageDigest:
		return fmt.Errorf("%s: %w", op, images.ErrDigestExists)
	case indexImageTag:
		return fmt.Errorf("%s: tag %s: %w", op, img.Tag, images.ErrTagExists)
	}
	// The error does not name the index (FerretDB on insert): look at what is there. A
	// concurrent delete can make both look-ups miss; the duplicate error is then reported as is.
	n, lerr := s.images.CountDocuments(ctx, imageFilter(img.Name, img.Digest, ""))
	if lerr != nil {
		return fmt.Errorf("%s: %w (and looking up the duplicate: %w)", op, err, lerr)
	}
	if n > 0 {
		return fmt.Errorf("%s: %w", op, images.ErrDigestExists)
	}
	if img.Tag != "" {
		n, lerr = s.images.CountDocuments(ctx, imageFilter(img.Name, "", img.Tag))
		if lerr != nil {
			return fmt.Errorf("%s: %w (and looking up the duplicate: %w)", op, err, lerr)
		}
		if n > 0 {
			return fmt.Errorf("%s: tag %s: %w", op, img.Tag, images.ErrTagExists)
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// GetImage finds by name and digest when digest is set, else by name and tag; ErrNotFound if
// none.
func (s *Store) GetImage(ctx context.Context, name, digest, tag string) (*images.Image, error) {
	var img images.Image
	err := s.images.FindOne(ctx, imageFilter(name, digest, tag)).Decode(&img)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, fmt.Errorf("get image %s: %w", imageRef(name, digest, tag), images.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get image %s: %w", imageRef(name, digest, tag), err)
	}
	return &img, nil
}

// ListImages returns up to limit (default 1000) images sorted by name and digest, after
// skipping skip of them.
func (s *Store) ListImages(ctx context.Context, skip, limit int) ([]images.Image, error) {
	cur, err := s.images.Find(ctx, bson.D{}, options.Find().
		SetSort(bson.D{{Key: "name", Value: 1}, {Key: "digest", Value: 1}}).
		SetSkip(int64(max(skip, 0))).
		SetLimit(limitOrDefault(limit)))
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	out := []images.Image{}
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	return out, nil
}

// DeleteImage deletes the image found as in GetImage; ErrNotFound if none.
func (s *Store) DeleteImage(ctx context.Context, name, digest, tag string) error {
	res, err := s.images.DeleteOne(ctx, imageFilter(name, digest, tag))
	if err != nil {
		return fmt.Errorf("delete image %s: %w", imageRef(name, digest, tag), err)
	}
	if res.DeletedCount == 0 {
		return fmt.Errorf("delete image %s: %w", imageRef(name, digest, tag), images.ErrNotFound)
	}
	return nil
}

func imageRef(name, digest, tag string) string {
	if digest != "" {
		return name + "@" + digest
	}
	return name + ":" + tag
}
