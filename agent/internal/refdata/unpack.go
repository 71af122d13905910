package refdata

import (
	"context"
	"os"
	"path"

	"github.com/kbase/cts/agent/internal/untar"
)

// unpack extracts the archive at file in format fm into root with the Tree policy of
// agent/internal/untar, and returns the manifest's files and links. single is the output name
// of a single compressed file.
func unpack(ctx context.Context, root *os.Root, file string, fm format, single string, cfg Config) ([]File, []Symlink, error) {
	x, err := untar.New(root, untar.Options{
		Mode:     untar.Tree,
		Limits:   untar.Limits{MaxBytes: cfg.MaxBytes, MaxEntries: cfg.MaxFiles},
		Reserved: []string{ManifestName},
	})
	if err != nil {
		return nil, nil, err
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	c := untar.Plain
	switch fm {
	case fmtTarGz, fmtGz:
		c = untar.Gzip
	case fmtTarZst, fmtZst:
		c = untar.Zstd
	}
	r, err := untar.Decompress(f, c)
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	if fm == fmtGz || fm == fmtZst {
		err = x.WriteFile(ctx, path.Base(single), r, 0o644)
	} else {
		err = x.Extract(ctx, r)
	}
	if err == nil {
		err = x.Finish()
	}
	if err != nil {
		return nil, nil, err
	}
	files := x.Files()
	out := make([]File, len(files))
	for i, f := range files {
		out[i] = File{Path: f.Path, Size: f.Size, CRC64NVME: f.CRC64NVME}
	}
	var links []Symlink
	for _, l := range x.Symlinks() {
		links = append(links, Symlink{Path: l.Path, Target: l.Target})
	}
	return out, links, nil
}
