// Command cts-launcher-sim is the load benchmark's launcher plugin (package
// test/load/simlaunch): the coordinator starts it through hashicorp/go-plugin like any
// launcher, and it hands each launch to the load generator, which runs simulated agents. It
// is not meant to be run by hand.
package main

import (
	"github.com/kbase/cts/shared/launcher"
	"github.com/kbase/cts/test/load/simlaunch"
)

func main() {
	launcher.Serve(simlaunch.New())
}
