package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/kbase/cts/coordinator/wire"
)

// s3Path escapes each '/'-separated part of an S3 path, keeping the '/' (the routes take the
// rest of the path).
func s3Path(prefix, p string) string {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return prefix + strings.Join(parts, "/")
}

func (c *Client) refdataList(ctx context.Context, path string) ([]Refdata, error) {
	var out wire.RefdataList
	if err := c.Do(ctx, http.MethodGet, path, nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Data, nil
}

// Refdata returns GET /refdata: the registered reference data (at most 1000, by file).
func (c *Client) Refdata(ctx context.Context) ([]Refdata, error) {
	return c.refdataList(ctx, "/refdata")
}

// RefdataByID returns GET /refdata/id/{id}; admin selects GET /admin/refdata/{id}, which adds
// the per-site admin fields (admins only).
func (c *Client) RefdataByID(ctx context.Context, id string, admin bool) (*Refdata, error) {
	path := "/refdata/id/" + url.PathEscape(id)
	if admin {
		path = "/admin/refdata/" + url.PathEscape(id)
	}
	var out Refdata
	if err := c.Do(ctx, http.MethodGet, path, nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RefdataByPath returns GET /refdata/path/{s3path}: the reference data of one S3 file.
func (c *Client) RefdataByPath(ctx context.Context, s3path string) ([]Refdata, error) {
	return c.refdataList(ctx, s3Path("/refdata/path/", s3path))
}

// RegisterRefdata sends POST /admin/refdata/{s3path}?crc64nvme=&unpack= (admins only): the
// file's CRC64/NVME (base64, must match S3's) and whether to unpack the archive. The service
// starts staging it at every active site.
func (c *Client) RegisterRefdata(ctx context.Context, s3path, crc64nvme string, unpack bool) (*Refdata, error) {
	q := url.Values{"crc64nvme": {crc64nvme}}
	if unpack {
		q.Set("unpack", strconv.FormatBool(unpack))
	}
	var out Refdata
	if err := c.Do(ctx, http.MethodPost, s3Path("/admin/refdata/", s3path), q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RecoverRefdata sends PUT /admin/refdata/{id}/{site}/recover (admins only): stage the data at
// the site again.
func (c *Client) RecoverRefdata(ctx context.Context, id, site string) error {
	return c.Do(ctx, http.MethodPut, "/admin/refdata/"+url.PathEscape(id)+"/"+url.PathEscape(site)+"/recover", nil, nil, nil)
}

// CleanRefdata sends DELETE /admin/refdata/{id}/{site}/clean (admins only); force cleans a
// staging that has not ended.
func (c *Client) CleanRefdata(ctx context.Context, id, site string, force bool) error {
	var q url.Values
	if force {
		q = url.Values{"force": {"true"}}
	}
	return c.Do(ctx, http.MethodDelete, "/admin/refdata/"+url.PathEscape(id)+"/"+url.PathEscape(site)+"/clean", q, nil, nil)
}
