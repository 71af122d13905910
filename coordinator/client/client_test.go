package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kbase/cts/test/ports"
)

func newTestClient(t *testing.T, h http.Handler, token string) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := New(srv.URL+"/services/cts/", token)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writeCTSError(w http.ResponseWriter, status int, code AppCode, apperror, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"httpcode": status, "httpstatus": http.StatusText(status), "time": "2024-10-24T22:35:40Z",
		"request_id": "r-1", "appcode": code, "apperror": apperror, "message": msg,
	}})
}

func TestNew(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url, want string
		ok        bool
	}{
		{"https://ci.kbase.us/services/cts", "https://ci.kbase.us/services/cts", true},
		{"http://127.0.0.1:5000/", "http://127.0.0.1:5000", true},
		{" http://h ", "http://h", true},
		{"ftp://h", "", false},
		{"h:5000", "", false},
		{"http://user:pw@h", "", false},
		{"http://h/?a=1", "", false},
		{"", "", false},
	} {
		t.Run(tc.url, func(t *testing.T) {
			c, err := New(tc.url, "tok")
			if (err == nil) != tc.ok {
				t.Fatalf("New(%q) error %v, want ok=%v", tc.url, err, tc.ok)
			}
			if err != nil {
				if strings.Contains(err.Error(), "pw") {
					t.Errorf("error shows the password: %v", err)
				}
				return
			}
			if c.URL() != tc.want {
				t.Errorf("URL() = %q, want %q", c.URL(), tc.want)
			}
		})
	}
}

// TestRequests checks paths (under the base path, image references kept whole), the token
// header, query parameters and bodies of the typed calls.
func TestRequests(t *testing.T) {
	t.Parallel()
	type seen struct{ method, uri, auth, body string }
	var mu sync.Mutex
	var got []seen
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, seen{r.Method, r.RequestURI, r.Header.Get("Authorization"), string(b)})
		mu.Unlock()
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/services/cts/jobs":
			_, _ = io.WriteString(w, `{"job_id":"j1"}`)
		case strings.Contains(r.URL.Path, "/images/"):
			_, _ = io.WriteString(w, `{"name":"ghcr.io/kbase/x","digest":"sha256:ab","entrypoint":["/x"],"registered_by":"a","registered_on":"2024-10-24T22:35:40Z"}`)
		case strings.HasSuffix(r.URL.Path, "/jobs"):
			_, _ = io.WriteString(w, `{"jobs":[]}`)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	c := newTestClient(t, h, "SECRET")
	ctx := context.Background()
	id, err := c.Submit(ctx, &JobInput{Cluster: "kbase", Image: "img", InputFiles: []InputFile{{File: "b/k"}},
		OutputDir: "b/out", Memory: "1000", Runtime: "PT5M", Params: Params{Args: []Arg{Literal("-v"), InputFilesArg("comma_separated_list")}}})
	if err != nil || id != "j1" {
		t.Fatalf("Submit = %q, %v", id, err)
	}
	if _, err := c.RegisterImage(ctx, "ghcr.io/kbase/x:1.0@sha256:ab", ImageRegistration{UsageNotes: "n"}); err != nil {
		t.Fatal(err)
	}
	after := time.Date(2024, 10, 24, 22, 0, 0, 0, time.FixedZone("x", 3600))
	if _, err := c.AdminListJobs(ctx, ListOptions{User: "u", State: "complete", After: after, Limit: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListJobs(ctx, ListOptions{User: "ignored"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Cancel(ctx, "j 1"); err != nil {
		t.Fatal(err)
	}
	want := []seen{
		{"POST", "/services/cts/jobs", "Bearer SECRET", `{"cluster":"kbase","image":"img","params":{"declobber":false,"args":["-v",{"type":"input_files","input_files_format":"comma_separated_list"}]},"memory":1000,"runtime":"PT5M","output_dir":"b/out","input_files":["b/k"]}`},
		{"POST", "/services/cts/admin/images/ghcr.io/kbase/x:1.0@sha256:ab", "Bearer SECRET", `{"usage_notes":"n"}`},
		{"GET", "/services/cts/admin/jobs?after=2024-10-24T21%3A00%3A00Z&limit=5&state=complete&user=u", "Bearer SECRET", ""},
		{"GET", "/services/cts/jobs", "Bearer SECRET", ""},
		{"PUT", "/services/cts/jobs/j%201/cancel", "Bearer SECRET", ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("requests:\n%q\nwant\n%q", got, want)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/services/cts/jobs/nope":
			writeCTSError(w, 404, CodeNoSuchJob, "No such job", "No job with ID 'nope' exists")
		case "/services/cts/jobs":
			w.WriteHeader(400)
			_, _ = io.WriteString(w, `{"error":{"httpcode":400,"httpstatus":"Bad Request","appcode":30010,"apperror":"Request validation failed","request_validation_detail":[{"type":"missing","loc":["body","input_files"],"msg":"Field required"},{"type":"x","loc":["body","params","args",0],"msg":"bad"}]}}`)
		default:
			w.WriteHeader(502)
			_, _ = io.WriteString(w, "<html>Bad Gateway</html>")
		}
	})
	c := newTestClient(t, h, "")
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		call func() error
		code AppCode
		text string
	}{
		{"cts error", func() error { _, err := c.Job(ctx, "nope"); return err }, CodeNoSuchJob,
			"No such job (40040): No job with ID 'nope' exists [HTTP 404, request r-1]"},
		{"validation", func() error { _, err := c.SubmitJSON(ctx, []byte(`{}`)); return err }, CodeRequestValidation,
			"Request validation failed (30010): body.input_files: Field required; body.params.args.0: bad [HTTP 400]"},
		{"proxy", func() error { _, err := c.Sites(ctx); return err }, 0, "Bad Gateway: <html>Bad Gateway</html> [HTTP 502]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v is not an *APIError", err)
			}
			if ae.AppCode != tc.code || ae.Error() != tc.text {
				t.Errorf("got %d %q, want %d %q", ae.AppCode, ae.Error(), tc.code, tc.text)
			}
		})
	}
}

func TestUnreachableAndCancelled(t *testing.T) {
	t.Parallel()
	// A reserved port refuses connections, and nothing else can listen on it meanwhile.
	port, err := ports.Reserve("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer port.Close()
	addr := port.Addr()
	c, err := New("http://"+addr, "tok")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.WhoAmI(context.Background())
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("closed port: %v, want ErrUnreachable", err)
	}

	block := make(chan struct{})
	defer close(block)
	slow := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }), "")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = slow.Sites(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrUnreachable) {
		t.Errorf("expired context: %v, want DeadlineExceeded and not ErrUnreachable", err)
	}
}

func TestJobInputJSON(t *testing.T) {
	t.Parallel()
	in := JobInput{
		Image:      "img",
		InputFiles: []InputFile{{File: "b/a"}, {File: "b/c", CRC64NVME: "AAAAAAAAAAA=", DataID: "d1"}},
		Memory:     "10MB",
		Runtime:    "1.5",
		Params: Params{Environment: Env{
			{Key: "Z", Value: Literal("1")}, {Key: "A", Value: ContainerNumberArg()},
		}},
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"image":"img","params":{"declobber":false,"environment":{"Z":"1","A":{"type":"container_number"}}},"memory":"10MB","runtime":1.5,"input_files":["b/a",{"file":"b/c","crc64nvme":"AAAAAAAAAAA=","data_id":"d1"}]}`
	if string(b) != want {
		t.Errorf("marshal:\n%s\nwant\n%s", b, want)
	}
	back, err := DecodeJobInput(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*back, in) {
		t.Errorf("round trip: %+v, want %+v", *back, in)
	}
	for _, tc := range []struct{ name, doc, err string }{
		{"top level", `{"image":"x","imgae":"y"}`, `unknown field "imgae"`},
		{"params", `{"params":{"arg":[]}}`, `unknown field "arg"`},
		{"input file", `{"input_files":[{"file":"b/k","crc":"x"}]}`, `input_files[0]: unknown field "crc"`},
		{"arg parameter", `{"params":{"args":["a",{"type":"input_files","format":"x"}]}}`, `params.args[1]: unknown field "format"`},
		{"env parameter", `{"params":{"environment":{"E":{"type":"container_number","prefix":"x"}}}}`, `params.environment.E: unknown field "prefix"`},
		{"trailing", `{"image":"x"} {}`, "data after"},
		{"wrong type", `{"cpus":"two"}`, "cpus"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeJobInput([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("DecodeJobInput(%s) = %v, want an error with %q", tc.doc, err, tc.err)
			}
		})
	}
}

// TestJobViewRoundTrip decodes an admin's job as the service renders it and encodes it again:
// nothing of the service's view is lost (cts get prints the re-encoded job).
func TestJobViewRoundTrip(t *testing.T) {
	t.Parallel()
	view := `{"id":"j1","user":"u","admin_meta":{"k":1},"state":"complete",
	"transition_times":[{"state":"created","time":"2024-10-24T22:35:40Z","trans_id":"t1","notif_sent":true},
	                    {"state":"complete","time":"2024-10-24T22:35:41.123456Z","trans_id":"t2","notif_sent":false}],
	"job_input":{"cluster":"kbase","image":"img:1","params":{"input_mount_point":"/in","output_mount_point":"/out",
	  "declobber":true,"args":["-x",{"type":"input_files","input_files_format":"repeat_parameter","flag":"-i"}],
	  "environment":{"B":"2","A":{"type":"container_number","container_num_prefix":"c"}}},
	  "num_containers":2,"cpus":4,"memory":100000000,"runtime":"PT5M","input_roots":["b/r"],"output_dir":"b/out/",
	  "input_files":[{"file":"b/r/a","crc64nvme":"AAAAAAAAAAA="},{"file":"b/r/b","crc64nvme":"AAAAAAAAAAE=","data_id":"d"}]},
	"image":{"name":"img","digest":"sha256:ab","tag":"1","entrypoint":["/x"],"registered_by":"a","registered_on":"2024-10-24T22:00:00Z"},
	"input_file_count":2,"cpu_hours":0.5,"cpu_factor":1,"max_memory":123,"output_file_count":1,
	"logpath":"logs/j1","outputs":[{"file":"b/out/x","crc64nvme":"AAAAAAAAAAI="}],
	"cleaned":false,"admin_error":"e","launch":{"site":"local","handle":"h","attempt":0}}`
	var j AdminJob
	if err := json.Unmarshal([]byte(view), &j); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	_ = json.Unmarshal([]byte(view), &a)
	_ = json.Unmarshal(out, &b)
	if !reflect.DeepEqual(a, b) {
		t.Errorf("round trip changed the job:\n%s\nwant\n%s", out, view)
	}
	if !bytes.Contains(out, []byte(`"environment":{"B":"2","A":`)) {
		t.Errorf("environment order lost: %s", out)
	}
}
