package api

import "net/http"

// OnUndocumentedStatus makes s call f, instead of logging, when a route answers an error
// status its OpenAPI document does not list.
func OnUndocumentedStatus(s *Server, f func(r *http.Request, route string, status int)) {
	s.undocumented = f
}
