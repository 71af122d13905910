package metrics

import (
	"net/http"
	"net/http/pprof"
)

// ProfilesPath is where Profiles is mounted (net/http/pprof's own paths).
const ProfilesPath = "/debug/pprof/"

// Profiles serves the Go runtime's profiles (net/http/pprof: CPU, heap, goroutines, mutex and
// block contention, execution traces) to CTS administrators only: authorize checks each
// request (the API's admin check) and fail writes its error in the CTS error format. The
// coordinator mounts it only when observability.pprof is on: a profile reveals internals and
// costs CPU while it runs.
//
//	curl -H "Authorization: Bearer $ADMIN_TOKEN" -o cpu.pprof \
//	  'https://cts.example.org/debug/pprof/profile?seconds=30'
//	go tool pprof -http :8081 cpu.pprof
func Profiles(authorize func(*http.Request) error, fail func(http.ResponseWriter, *http.Request, error)) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(ProfilesPath, pprof.Index) // also serves the named profiles: heap, goroutine, ...
	mux.HandleFunc(ProfilesPath+"cmdline", pprof.Cmdline)
	mux.HandleFunc(ProfilesPath+"profile", pprof.Profile)
	mux.HandleFunc(ProfilesPath+"symbol", pprof.Symbol)
	mux.HandleFunc(ProfilesPath+"trace", pprof.Trace)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := authorize(r); err != nil {
			fail(w, r, err)
			return
		}
		mux.ServeHTTP(w, r)
	})
}
