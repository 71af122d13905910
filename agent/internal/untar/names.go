package untar

import (
	"fmt"
	"path"
	"strings"
)

// Linux's limits on a path and on one of its components: no system call takes a longer one,
// so an entry beyond them could only be created component by component (as os.Root does),
// making a tree that ordinary tools cannot name.
const (
	maxPath      = 4095 // PATH_MAX less the terminating NUL
	maxComponent = 255  // NAME_MAX
)

// cleanName turns an entry name into a clean path relative to the root ("." for the root
// itself), refusing empty and absolute names, ".." components, NUL bytes, and names beyond
// Linux's limits.
func cleanName(n string) (string, error) {
	switch {
	case n == "":
		return "", fmt.Errorf("%w: empty name", ErrUnsafe)
	case strings.HasPrefix(n, "/"):
		return "", fmt.Errorf("%w: absolute name", ErrUnsafe)
	case strings.ContainsRune(n, 0):
		return "", fmt.Errorf("%w: name contains a NUL byte", ErrUnsafe)
	case len(n) > maxPath:
		return "", fmt.Errorf("%w: name of %d bytes (the limit is %d)", ErrUnsafe, len(n), maxPath)
	}
	for c := range strings.SplitSeq(n, "/") {
		if c == ".." {
			return "", fmt.Errorf("%w: name contains \"..\"", ErrUnsafe)
		}
		if len(c) > maxComponent {
			return "", fmt.Errorf("%w: a component of %d bytes (the limit is %d)", ErrUnsafe, len(c), maxComponent)
		}
	}
	return path.Clean(n), nil
}

// checkTarget refuses a symlink target no system call could store.
func checkTarget(t string) error {
	switch {
	case t == "":
		return fmt.Errorf("%w: symlink without a target", ErrUnsafe)
	case strings.ContainsRune(t, 0):
		return fmt.Errorf("%w: symlink target contains a NUL byte", ErrUnsafe)
	case len(t) > maxPath:
		return fmt.Errorf("%w: symlink target of %d bytes (the limit is %d)", ErrUnsafe, len(t), maxPath)
	}
	return nil
}

// parentOf is the directory part of a clean relative name ("." at the top).
func parentOf(name string) string { return path.Dir(name) }
