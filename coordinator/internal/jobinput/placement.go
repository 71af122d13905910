package jobinput

import (
	"fmt"
	"strings"

	"github.com/kbase/cts/coordinator/internal/ctserr"
)

// FilesPerContainer splits the input files across the containers: each
// container gets a contiguous run of indexes into InputFiles, and the first
// len(InputFiles) % NumContainers containers get one extra file. Container n's slice is at
// index n. NumContainers below 1 is treated as 1.
func (ji *JobInput) FilesPerContainer() [][]int {
	n := max(ji.NumContainers, 1)
	per, extra := len(ji.InputFiles)/n, len(ji.InputFiles)%n
	out := make([][]int, n)
	next := 0
	for c := range out {
		size := per
		if c < extra {
			size++
		}
		idx := make([]int, size)
		for i := range idx {
			idx[i] = next
			next++
		}
		out[c] = idx
	}
	return out
}

// Placements returns where each input file goes, relative to the input mount point:
// its path minus the longest input root that is a proper path-segment
// prefix of it; with the root "" the full path including the bucket; with no matching root
// its base name.
//
// Unlike the Python service, which only finds collisions when the job runs, Placements
// refuses (with a ctserr validation error, loc ["body", "input_files", j]) two files that
// land on the same path, a file that lands where another file needs a directory, and a path
// with an empty, "." or ".." segment (which would land outside its place or on a directory).
func (ji *JobInput) Placements() ([]string, error) {
	roots := make([]string, 0, len(ji.InputRoots))
	for _, r := range ji.InputRoots {
		roots = append(roots, strings.TrimRight(r, "/"))
	}
	rel := make([]string, len(ji.InputFiles))
	var details []ctserr.ValidationDetail
	for i, f := range ji.InputFiles {
		rel[i] = placement(f.File, roots)
		if !cleanRelative(rel[i]) {
			msg := fmt.Sprintf("Input file '%s' at index %d would be placed at '%s', "+
				"which has an empty, '.' or '..' path segment", f.File, i, ji.mountPath(rel[i]))
			details = append(details, valueError([]any{"body", "input_files", i}, f.File, msg))
		}
	}
	if len(details) > 0 {
		return nil, ctserr.Validation(details...)
	}
	files := make(map[string]int, len(rel)) // placement → index of the file there
	dirs := make(map[string]int)            // directory → index of the first file under it
	collide := func(i, j int, at string) {
		msg := fmt.Sprintf("Input files '%s' at index %d and '%s' at index %d collide at path '%s'",
			ji.InputFiles[i].File, i, ji.InputFiles[j].File, j, ji.mountPath(at))
		details = append(details, valueError([]any{"body", "input_files", j}, ji.InputFiles[j].File, msg))
	}
	for j, r := range rel {
		if i, ok := files[r]; ok {
			collide(i, j, r)
			continue
		}
		if i, ok := dirs[r]; ok {
			collide(i, j, r)
			continue
		}
		clash := false
		for k := strings.IndexByte(r, '/'); k >= 0; k = nextSlash(r, k) {
			if i, ok := files[r[:k]]; ok {
				collide(i, j, r[:k])
				clash = true
				break
			}
		}
		if clash {
			continue
		}
		files[r] = j
		for k := strings.IndexByte(r, '/'); k >= 0; k = nextSlash(r, k) {
			if _, ok := dirs[r[:k]]; !ok {
				dirs[r[:k]] = j
			}
		}
	}
	if len(details) > 0 {
		return nil, ctserr.Validation(details...)
	}
	return rel, nil
}

// ContainerPaths returns each input file's path inside the container: the input mount point
// joined with its placement. Errors are those of Placements.
func (ji *JobInput) ContainerPaths() ([]string, error) {
	rel, err := ji.Placements()
	if err != nil {
		return nil, err
	}
	out := make([]string, len(rel))
	for i, r := range rel {
		out[i] = ji.mountPath(r)
	}
	return out, nil
}

func (ji *JobInput) mountPath(rel string) string {
	mount := ji.Params.InputMountPoint
	if mount == "" {
		mount = "/input_files"
	}
	return strings.TrimRight(mount, "/") + "/" + rel
}

func nextSlash(s string, k int) int {
	n := strings.IndexByte(s[k+1:], '/')
	if n < 0 {
		return -1
	}
	return k + 1 + n
}

// placement applies the longest matching root to file; roots carry no trailing slash.
func placement(file string, roots []string) string {
	best, found := -1, false
	for _, r := range roots {
		if r == "" {
			if !found {
				best, found = 0, true
			}
			continue
		}
		if len(file) > len(r)+1 && strings.HasPrefix(file, r) && file[len(r)] == '/' && len(r)+1 > best {
			best, found = len(r)+1, true
		}
	}
	if found {
		return file[best:]
	}
	return file[strings.LastIndexByte(file, '/')+1:]
}

// cleanRelative tells whether rel is a relative path of non-empty segments other than "."
// and "..".
func cleanRelative(rel string) bool {
	for seg := range strings.SplitSeq(rel, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}
