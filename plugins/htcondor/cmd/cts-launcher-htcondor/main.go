// Command cts-launcher-htcondor is the "htcondor" launcher plugin: the coordinator starts it
// through hashicorp/go-plugin and it runs jobs on an HTCondor pool with condor_submit,
// condor_q, condor_history and condor_rm (see package plugins/htcondor). It is not meant to be
// run by hand.
package main

import (
	"log/slog"
	"os"
	"strings"

	"github.com/kbase/cts/plugins/htcondor"
	"github.com/kbase/cts/shared/launcher"
)

func main() {
	// Made before Serve, so it keeps writing to the real stderr, which the host parses.
	logger := launcher.NewPluginLogger(os.Stderr, logLevel(os.Getenv("CTS_LOG_LEVEL")))
	launcher.Serve(htcondor.New(htcondor.Options{Logger: logger}))
}

// logLevel parses CTS_LOG_LEVEL (debug, info, warn, error); anything else is info.
func logLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return slog.LevelInfo
	}
	return l
}
