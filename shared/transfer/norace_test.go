//go:build !race

package transfer

// raceEnabled: see race_test.go.
const raceEnabled = false
