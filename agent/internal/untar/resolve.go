package untar

import (
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
)

// maxLinkHops bounds the symlinks followed while resolving one path (as the kernel's 40).
const maxLinkHops = 40

// resolveInside resolves p (relative to the root, possibly through the tree's own symlinks)
// and fails with ErrUnsafe when that leaves the root or goes through an absolute link.
// Components that do not exist (yet) are taken literally, so a dangling link is acceptable as
// long as its path stays inside. Tree mode only: Layers symlinks mean something only inside
// the container, and os.Root keeps every file-system call inside the root anyway.
func (x *Extractor) resolveInside(p string) error {
	var resolved []string
	todo := strings.Split(p, "/")
	hops := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(resolved) == 0 {
				return fmt.Errorf("%w: %s leads out of the tree", ErrUnsafe, quote(p))
			}
			resolved = resolved[:len(resolved)-1]
			continue
		}
		if len(x.links) == 0 {
			// No symlink was extracted: nothing can redirect a component.
			resolved = append(resolved, c)
			continue
		}
		cur := path.Join(append(slices.Clone(resolved), c)...)
		fi, err := x.root.Lstat(cur)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			resolved = append(resolved, c)
			continue
		}
		hops++
		if hops > maxLinkHops {
			return fmt.Errorf("%w: more than %d links resolving %s", ErrUnsafe, maxLinkHops, quote(p))
		}
		t, err := x.root.Readlink(cur)
		if err != nil {
			return fmt.Errorf("readlink %s: %w", quote(cur), err)
		}
		if path.IsAbs(t) {
			return fmt.Errorf("%w: %s goes through an absolute link", ErrUnsafe, quote(p))
		}
		todo = append(strings.Split(t, "/"), todo...)
	}
	return nil
}
