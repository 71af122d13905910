package client

import (
	"errors"
	"io"
	"net/http"
	"reflect"
	"testing"
	"time"
)

func TestProgress(t *testing.T) {
	t.Parallel()
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/services/cts/jobs/j%201/progress", "/services/cts/jobs/j 1/progress":
			_, _ = io.WriteString(w, `{"containers":[{"container":2,"phase":"upload","bytes_done":5,"bytes_total":9,`+
				`"files_done":1,"files_total":3,"updated":"2024-10-24T22:35:40.5Z"}]}`)
		case "/services/cts/jobs/empty/progress":
			_, _ = io.WriteString(w, `{"containers":[]}`)
		default:
			writeCTSError(w, 404, CodeNotFound, "Not Found", "Not Found")
		}
	}), "tok")
	got, err := c.Progress(t.Context(), "j 1")
	if err != nil {
		t.Fatal(err)
	}
	want := []ContainerProgress{{Container: 2, Phase: "upload", BytesDone: 5, BytesTotal: 9, FilesDone: 1, FilesTotal: 3,
		Updated: Timestamp{Time: time.Date(2024, 10, 24, 22, 35, 40, 5e8, time.UTC)}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Progress = %+v, want %+v", got, want)
	}
	if got, err := c.Progress(t.Context(), "empty"); err != nil || len(got) != 0 {
		t.Errorf("Progress(empty) = %v, %v", got, err)
	}
	_, err = c.Progress(t.Context(), "old-server")
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != 404 {
		t.Errorf("Progress on a service without the route = %v, want a 404 *APIError", err)
	}
}
