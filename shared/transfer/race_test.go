//go:build race

package transfer

// raceEnabled: the race detector's sync.Pool drops a share of what is put back, so pooled
// buffers are allocated again and allocation counts grow with the bytes moved.
const raceEnabled = true
