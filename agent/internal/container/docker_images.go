package container

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// The Docker engine keeps every image it pulled. The images agents pulled are recorded, one
// file per image under <StateDir>/docker-images, so that PruneImages removes those (and only
// those: an image that was in the engine before an agent needed it belongs to whoever put it
// there). The record is also the image's use lock (see prune.go).

// dockerRecord is the content of a pull record.
type dockerRecord struct {
	Image  string    `json:"image"`
	Pulled time.Time `json:"pulled"`
}

func (d *Docker) recordPath(image string) string {
	sum := sha256.Sum256([]byte(image))
	return filepath.Join(d.cfg.StateDir, "docker-images", hex.EncodeToString(sum[:12])+".json")
}

// holdImage records an image the agent pulled (pulled) or marks a recorded one used again,
// and keeps a shared lock on its record until the process exits. An image the engine had
// without a record is not ours: nothing is recorded.
func (d *Docker) holdImage(ctx context.Context, image string, pulled bool) error {
	if d.cfg.StateDir == "" {
		return nil
	}
	p := d.recordPath(image)
	_, statErr := os.Stat(p)
	if !pulled && statErr != nil {
		return nil
	}
	d.heldMu.Lock()
	defer d.heldMu.Unlock()
	if _, ok := d.held[p]; !ok {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		unlock, err := lockFile(ctx, p, syscall.LOCK_SH)
		if err != nil {
			return err
		}
		d.held[p] = unlock
	}
	if pulled {
		b, _ := json.Marshal(dockerRecord{Image: image, Pulled: time.Now().UTC()})
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return err
		}
	}
	now := time.Now()
	return os.Chtimes(p, now, now)
}

// PruneImages implements Runtime for the images agents pulled into the Docker engine: those
// unused for maxAge go, then the least recently used ones while they take more than maxBytes.
// An image a live agent holds is skipped, and the engine itself refuses to remove one a
// container uses.
func (d *Docker) PruneImages(ctx context.Context, maxBytes int64, maxAge time.Duration) ([]PrunedImage, error) {
	if d.cfg.StateDir == "" {
		return nil, nil
	}
	dir := filepath.Join(d.cfg.StateDir, "docker-images")
	files, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("prune images: %w", err)
	}
	type entry struct {
		path string
		rec  dockerRecord
		size int64
		used time.Time
	}
	var entries []entry
	var total int64
	for _, f := range files {
		if !strings.HasSuffix(f.Name(), ".json") {
			continue
		}
		p := filepath.Join(dir, f.Name())
		b, err := os.ReadFile(p)
		var rec dockerRecord
		if err != nil || json.Unmarshal(b, &rec) != nil || rec.Image == "" {
			continue // being written, or not ours to judge
		}
		var st struct{ Size int64 }
		err = d.call(ctx, http.MethodGet, "/images/"+rec.Image+"/json", nil, nil, &st)
		var de *dockerError
		if errors.As(err, &de) && de.Status == http.StatusNotFound {
			// Removed by someone else: forget it (unless an agent holds it right now).
			if release, ok := tryExclusive(p); ok {
				os.Remove(p)
				release()
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("prune images: %w", err)
		}
		info, err := f.Info()
		if err != nil {
			continue
		}
		entries = append(entries, entry{path: p, rec: rec, size: st.Size, used: info.ModTime()})
		total += st.Size
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].used.Before(entries[j].used) })
	var pruned []PrunedImage
	var errs []error
	for _, e := range entries {
		if time.Since(e.used) <= maxAge && total <= maxBytes {
			continue
		}
		release, ok := tryExclusive(e.path)
		if !ok {
			continue // a live agent uses it
		}
		err := d.removeImage(ctx, e.rec.Image, false)
		var de *dockerError
		switch {
		case err == nil:
			os.Remove(e.path)
			total -= e.size
			pruned = append(pruned, PrunedImage{Image: e.rec.Image, Bytes: e.size, LastUsed: e.used})
		case errors.As(err, &de) && de.Status == http.StatusConflict:
			// A container (of an agent on another host name, or a stopped one) uses it.
		default:
			errs = append(errs, err)
		}
		release()
	}
	if err := errors.Join(errs...); err != nil {
		return pruned, fmt.Errorf("prune images: %w", err)
	}
	return pruned, nil
}

// removeImage removes one reference of an image from the engine (force: even when a stopped
// container uses it). An image already gone is removed. So is one whose removal failed
// because another removal took the image meanwhile: the engine (20.10) fails a DELETE of a
// reference with "500 unrecognized image ID" when a concurrent DELETE of another reference to
// the same image (the same image pulled from two registries, by two agents) removed the image
// under it. A failed removal is therefore checked: if the engine no longer knows the
// reference, the image is gone and the removal done.
func (d *Docker) removeImage(ctx context.Context, image string, force bool) error {
	var q url.Values
	if force {
		q = url.Values{"force": {"1"}}
	}
	err := d.call(ctx, http.MethodDelete, "/images/"+image, q, nil, nil)
	var de *dockerError
	if err == nil || errors.As(err, &de) && de.Status == http.StatusNotFound {
		return nil
	}
	if de == nil || de.Status == http.StatusConflict {
		return err // unreachable engine, or in use: not removed
	}
	gerr := d.call(ctx, http.MethodGet, "/images/"+image+"/json", nil, nil, nil)
	var ge *dockerError
	if errors.As(gerr, &ge) && ge.Status == http.StatusNotFound {
		return nil
	}
	return err
}

// tryExclusive takes an exclusive flock on path without waiting.
func tryExclusive(path string) (release func(), ok bool) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, false
	}
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		f.Close()
		return nil, false
	}
	return func() { unlockClose(f) }, true
}

// unlockClose releases f's flock, then closes it. The explicit unlock matters: a flock belongs
// to the open file, which a process forked by another goroutine shares until it execs, so a
// close alone can leave the lock held for a moment after its owner let it go.
func unlockClose(f *os.File) {
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	_ = f.Close()
}
