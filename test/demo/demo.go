// Package demo is the CTS demo as a library: it builds a small image in Go, pushes it to a
// registry, registers it with the coordinator, uploads inputs with their CRC64/NVME, submits a
// job over the REST API exactly as a user would, waits for it, and checks every output's
// checksum itself. `make demo` runs it against dev mode through cmd/cts-demo; the end-to-end
// test runs it and asserts every stage. It uses only public interfaces: REST, S3, the registry.
package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/kbase/cts/shared/checksum"
	"github.com/kbase/cts/test/imagebuild"
)

// Config says where the service is and what to run.
type Config struct {
	URL        string // coordinator root URL
	UserToken  string // a user with the staff role
	AdminToken string // a CTS admin
	S3Endpoint string
	S3Access   string
	S3Secret   string
	S3Region   string
	Registry   string // host:port of a registry the workers can pull from
	Bucket     string // data bucket
	Site       string // cluster name
	// ToolBinary is the static cts-demo-tool binary to put in the image.
	ToolBinary string
	Containers int
	// Prefix separates runs in the bucket (default: a random run name).
	Prefix string
	// Folder is where the runs go in the bucket ("" or "folder/"): a site with per-user
	// folders lets the user write only below theirs.
	Folder string
	Out    io.Writer
	// Timeout bounds the wait for the job (default 5 minutes).
	Timeout time.Duration
}

// FromEnv fills a Config from the variables cts-dev writes to its env file.
func FromEnv() Config {
	return Config{
		URL: os.Getenv("CTS_URL"), UserToken: os.Getenv("CTS_TOKEN"), AdminToken: os.Getenv("CTS_ADMIN_TOKEN"),
		S3Endpoint: os.Getenv("AWS_ENDPOINT_URL"), S3Access: os.Getenv("AWS_ACCESS_KEY_ID"),
		S3Secret: os.Getenv("AWS_SECRET_ACCESS_KEY"), S3Region: os.Getenv("AWS_REGION"),
		Registry: os.Getenv("CTS_REGISTRY"), Bucket: os.Getenv("CTS_DATA_BUCKET"), Site: os.Getenv("CTS_CLUSTER"),
	}
}

// Output is a job output as the service reported it.
type Output struct {
	File      string `json:"file"`
	CRC64NVME string `json:"crc64nvme"`
}

// Result is what the demo observed.
type Result struct {
	JobID  string
	Image  string
	Inputs []Output
	// States are the job's transitions in order.
	States  []string
	Job     map[string]any
	Outputs []Output
	Elapsed time.Duration
}

// Client is a minimal CTS REST client.
type Client struct {
	URL string
	HC  *http.Client
}

// APIError is a CTS error response.
type APIError struct {
	Status int
	Body   map[string]any
}

func (e *APIError) Error() string {
	b, _ := json.Marshal(e.Body)
	return fmt.Sprintf("HTTP %d: %s", e.Status, b)
}

// AppCode returns the CTS application code of the error, or 0.
func (e *APIError) AppCode() int {
	if m, ok := e.Body["error"].(map[string]any); ok {
		if c, ok := m["appcode"].(float64); ok {
			return int(c)
		}
	}
	return 0
}

// Do sends a request and decodes a JSON answer into out (when not nil).
func (c *Client) Do(ctx context.Context, method, path, token string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.URL, "/")+path, rd)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HC
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		e := &APIError{Status: resp.StatusCode}
		_ = json.Unmarshal(b, &e.Body)
		if e.Body == nil {
			e.Body = map[string]any{"raw": string(b)}
		}
		return e
	}
	if out == nil || len(b) == 0 {
		return nil
	}
	if p, ok := out.(*[]byte); ok {
		*p = b
		return nil
	}
	return json.Unmarshal(b, out)
}

// S3Client returns an S3 client for cfg (path style, our own CRC64/NVME).
func (cfg Config) S3Client() *s3.Client {
	return s3.New(s3.Options{
		Region: cfg.S3Region, BaseEndpoint: aws.String(cfg.S3Endpoint), UsePathStyle: true,
		Credentials:                credentials.NewStaticCredentialsProvider(cfg.S3Access, cfg.S3Secret, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// PutWithCRC uploads b to bucket/key with its CRC64/NVME and returns the checksum.
func PutWithCRC(ctx context.Context, c *s3.Client, bucket, key string, b []byte) (string, error) {
	crc := checksum.Encode(checksum.Sum(b))
	_, err := c.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(b),
		ContentLength:     aws.Int64(int64(len(b))),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc64nvme, ChecksumCRC64NVME: aws.String(crc),
	})
	return crc, err
}

func (cfg *Config) defaults() {
	if cfg.Containers <= 0 {
		cfg.Containers = 2
	}
	if cfg.Prefix == "" {
		cfg.Prefix = fmt.Sprintf("demo-%d", time.Now().Unix())
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Minute
	}
	if cfg.S3Region == "" {
		cfg.S3Region = "us-east-1"
	}
}

// genome makes a small FASTA-like text.
func genome(name string, lines int, r *rand.Rand) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, ">%s demo sequence\n", name)
	for range lines {
		for range 60 {
			b.WriteByte("ACGT"[r.IntN(4)])
		}
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// BuildAndRegister builds the demo image, pushes it and registers it; it returns the image
// reference jobs use: name:tag, or name@digest when the site had the image registered
// already under another tag (a dev site's sample, an earlier demo).
func BuildAndRegister(ctx context.Context, cfg Config, api *Client) (string, error) {
	bin, err := os.ReadFile(cfg.ToolBinary)
	if err != nil {
		return "", fmt.Errorf("read demo tool: %w", err)
	}
	img, err := imagebuild.Build([]imagebuild.File{{Path: "/usr/bin/cts-demo-tool", Mode: 0o755, Data: bin}},
		[]string{"/usr/bin/cts-demo-tool"}, []string{"PATH=/usr/bin:/bin"})
	if err != nil {
		return "", fmt.Errorf("build image: %w", err)
	}
	name := cfg.Registry + "/cts/demo"
	ref := name + ":" + cfg.Prefix
	digest, err := imagebuild.Push(ctx, img, ref)
	if err != nil {
		return "", fmt.Errorf("push image: %w", err)
	}
	fmt.Fprintf(cfg.Out, "image     %s@%s\n", ref, digest)
	var reg map[string]any
	err = api.Do(ctx, http.MethodPost, "/admin/images/"+ref, cfg.AdminToken, map[string]any{
		"usage_notes": "The CTS demo image: summarises text files.",
	}, &reg)
	var ae *APIError
	switch {
	case errors.As(err, &ae) && ae.AppCode() == appCodeImageDigestExists:
		// The site has these very bytes registered already, under another tag: a dev site
		// registers the demo image as its sample, and every demo pushes the same image. A
		// digest is registered once, so the demo runs the registered image by its digest.
		ref = name + "@" + digest
		if err := api.Do(ctx, http.MethodGet, "/images/"+ref, "", nil, &reg); err != nil {
			return "", fmt.Errorf("the site says image %s is registered already, but reading it failed: %w", ref, err)
		}
		fmt.Fprintf(cfg.Out, "registered already as %v:%v (entrypoint %v)\n", reg["name"], reg["tag"], reg["entrypoint"])
	case err != nil:
		return "", fmt.Errorf("register image: %w", err)
	default:
		fmt.Fprintf(cfg.Out, "registered %v (entrypoint %v)\n", reg["name"], reg["entrypoint"])
	}
	if reg["digest"] != digest {
		return "", fmt.Errorf("registered digest %v, pushed %s", reg["digest"], digest)
	}
	return ref, nil
}

// appCodeImageDigestExists is the CTS application code of registering a digest that is
// registered already.
const appCodeImageDigestExists = 50010

// Run performs the whole demo.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.defaults()
	start := time.Now()
	api := &Client{URL: cfg.URL}
	var root map[string]any
	if err := api.Do(ctx, http.MethodGet, "/", "", nil, &root); err != nil {
		return nil, fmt.Errorf("service root: %w", err)
	}
	fmt.Fprintf(cfg.Out, "service   %v %v at %s\n", root["service_name"], root["version"], cfg.URL)
	res := &Result{}
	var err error
	if res.Image, err = BuildAndRegister(ctx, cfg, api); err != nil {
		return nil, err
	}

	s3c := cfg.S3Client()
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	var inputs []string
	for i := range 2 * cfg.Containers {
		key := fmt.Sprintf("%s%s/inputs/genome_%d.fna", cfg.Folder, cfg.Prefix, i)
		crc, err := PutWithCRC(ctx, s3c, cfg.Bucket, key, genome(fmt.Sprintf("genome_%d", i), 200+50*i, r))
		if err != nil {
			return nil, fmt.Errorf("upload input: %w", err)
		}
		inputs = append(inputs, cfg.Bucket+"/"+key)
		res.Inputs = append(res.Inputs, Output{File: cfg.Bucket + "/" + key, CRC64NVME: crc})
		fmt.Fprintf(cfg.Out, "input     %s  crc64nvme=%s\n", cfg.Bucket+"/"+key, crc)
	}

	body := map[string]any{
		"cluster": cfg.Site, "image": res.Image, "input_files": inputs,
		"output_dir":     fmt.Sprintf("%s/%s%s/output", cfg.Bucket, cfg.Folder, cfg.Prefix),
		"num_containers": cfg.Containers, "cpus": 1, "memory": "100MB", "runtime": "PT5M",
		"params": map[string]any{
			"args": []any{
				"--container", map[string]any{"type": "container_number"},
				map[string]any{"type": "input_files", "input_files_format": "space_separated_list"},
			},
		},
	}
	var sub map[string]string
	if err := api.Do(ctx, http.MethodPost, "/jobs", cfg.UserToken, body, &sub); err != nil {
		return nil, fmt.Errorf("submit: %w", err)
	}
	res.JobID = sub["job_id"]
	fmt.Fprintf(cfg.Out, "submitted job %s (%d containers)\n", res.JobID, cfg.Containers)

	wctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	seen := 0
	for {
		var st struct {
			State       string `json:"state"`
			Transitions []struct {
				State string `json:"state"`
				Time  string `json:"time"`
			} `json:"transition_times"`
		}
		if err := api.Do(wctx, http.MethodGet, "/jobs/"+res.JobID+"/status", cfg.UserToken, nil, &st); err != nil {
			return res, fmt.Errorf("status: %w", err)
		}
		for _, t := range st.Transitions[seen:] {
			fmt.Fprintf(cfg.Out, "  %-28s %s\n", t.State, t.Time)
			res.States = append(res.States, t.State)
		}
		seen = len(st.Transitions)
		if st.State == "complete" || st.State == "error" || st.State == "canceled" {
			break
		}
		select {
		case <-wctx.Done():
			return res, fmt.Errorf("job %s still %s after %s", res.JobID, st.State, cfg.Timeout)
		case <-time.After(250 * time.Millisecond):
		}
	}
	if err := api.Do(ctx, http.MethodGet, "/jobs/"+res.JobID, cfg.UserToken, nil, &res.Job); err != nil {
		return res, fmt.Errorf("get job: %w", err)
	}
	res.Elapsed = time.Since(start)
	if res.Job["state"] != "complete" {
		return res, fmt.Errorf("job %s ended %v: %v", res.JobID, res.Job["state"], res.Job["error"])
	}
	b, _ := json.Marshal(res.Job["outputs"])
	if err := json.Unmarshal(b, &res.Outputs); err != nil {
		return res, fmt.Errorf("outputs: %w", err)
	}
	fmt.Fprintf(cfg.Out, "outputs (each downloaded and its CRC64/NVME recomputed here):\n")
	for _, o := range res.Outputs {
		if err := verifyObject(ctx, s3c, o); err != nil {
			return res, err
		}
		fmt.Fprintf(cfg.Out, "  %-60s crc64nvme=%s  verified\n", o.File, o.CRC64NVME)
	}
	var log []byte
	if err := api.Do(ctx, http.MethodGet, "/jobs/"+res.JobID+"/log/0/stdout", cfg.UserToken, nil, &log); err != nil {
		return res, fmt.Errorf("container 0 stdout: %w", err)
	}
	fmt.Fprintf(cfg.Out, "container 0 stdout:\n%s", indent(string(log)))
	fmt.Fprintf(cfg.Out, "job %s complete: %d outputs in %s\n", res.JobID, len(res.Outputs), res.Elapsed.Round(time.Millisecond))
	return res, nil
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if l != "" {
			b.WriteString("  " + l)
		}
	}
	return b.String()
}

// verifyObject downloads an object, recomputes its CRC64/NVME and compares it with both the
// service's record and S3's stored checksum.
func verifyObject(ctx context.Context, c *s3.Client, o Output) error {
	bucket, key, ok := strings.Cut(o.File, "/")
	if !ok {
		return fmt.Errorf("bad output path %q", o.File)
	}
	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), ChecksumMode: types.ChecksumModeEnabled})
	if err != nil {
		return fmt.Errorf("head %s: %w", o.File, err)
	}
	if got := aws.ToString(head.ChecksumCRC64NVME); got != o.CRC64NVME {
		return fmt.Errorf("%s: S3 stores CRC64/NVME %s, the service recorded %s", o.File, got, o.CRC64NVME)
	}
	obj, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return fmt.Errorf("get %s: %w", o.File, err)
	}
	defer obj.Body.Close()
	sum, _, err := checksum.Of(obj.Body)
	if err != nil {
		return fmt.Errorf("read %s: %w", o.File, err)
	}
	if sum != o.CRC64NVME {
		return fmt.Errorf("%s: content has CRC64/NVME %s, the service recorded %s", o.File, sum, o.CRC64NVME)
	}
	return nil
}

// ErrNotComplete is returned by callers that require a complete job.
var ErrNotComplete = errors.New("job did not complete")

// QueryEscape is url.PathEscape for image references in paths (kept for callers).
var QueryEscape = url.PathEscape
