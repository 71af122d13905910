//go:build !unix

package devmode

// lockDir does not lock where flock is missing: only one site per folder, by convention.
func lockDir(string) (func(), error) { return func() {}, nil }
