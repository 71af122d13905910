package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/gorilla/websocket"

	"github.com/kbase/cts/agent/internal/config"
	"github.com/kbase/cts/agent/internal/container"
	"github.com/kbase/cts/shared/protocol"
	"github.com/kbase/cts/shared/transfer"
)

// checkJobID is a job ID no job has: the role check asks the coordinator for it.
const checkJobID = "00000000-0000-0000-0000-000000000000"

// runCheck verifies the node's configuration for admins, one line per check:
//
//	coordinator  GET <SERVICE_ROOT_URL>/ answers the CTS root document (service_name)
//	token        the agent websocket accepts the token (an executor-role check: the
//	             coordinator refuses the upgrade with 401/403 otherwise) and answers a dry-run
//	             hello for a job that does not exist with "no such job": nothing is recorded
//	s3           HeadBucket of the S3_ERROR_LOG_PATH bucket (the bucket every agent writes
//	             logs to), or ListBuckets when it is not set
//	runtime      oci: `runc --version` and the runc root writable; docker: GET /_ping
//
// JOB_ID and CONTAINER_NUMBER are not needed. It exits 0 only if every check passes.
func runCheck(argv []string, out io.Writer) (int, error) {
	if len(argv) > 0 {
		return 2, fmt.Errorf("check takes no arguments, got %q", argv)
	}
	lookup := func(k string) (string, bool) {
		if v, ok := os.LookupEnv(k); ok && strings.TrimSpace(v) != "" {
			return v, true
		}
		switch k {
		case "JOB_ID":
			return checkJobID, true
		case "CONTAINER_NUMBER":
			return "0", true
		}
		return "", false
	}
	cfg, err := config.FromEnv(lookup)
	if err != nil {
		fmt.Fprintf(out, "FAIL configuration: %v\n", strings.ReplaceAll(err.Error(), "\n", "; "))
		return 1, errors.New("configuration is incomplete")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	checks := []struct {
		name string
		fn   func(context.Context, config.Config) (string, error)
	}{
		{"coordinator", checkCoordinator},
		{"token", checkToken},
		{"s3", checkS3},
		{"runtime", checkRuntime},
	}
	failed := 0
	for _, c := range checks {
		cctx, ccancel := context.WithTimeout(ctx, 15*time.Second)
		detail, err := c.fn(cctx, cfg)
		ccancel()
		if err != nil {
			failed++
			fmt.Fprintf(out, "FAIL %-11s %v\n", c.name, err)
			continue
		}
		fmt.Fprintf(out, "ok   %-11s %s\n", c.name, detail)
	}
	if failed > 0 {
		return 1, fmt.Errorf("%d of %d checks failed", failed, len(checks))
	}
	return 0, nil
}

func checkCoordinator(ctx context.Context, cfg config.Config) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(cfg.ServiceURL, "/")+"/", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("%s unreachable: %w", cfg.ServiceURL, err)
	}
	defer resp.Body.Close()
	var root struct {
		ServiceName string `json:"service_name"`
		Version     string `json:"version"`
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: HTTP %d", cfg.ServiceURL, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&root); err != nil || root.ServiceName == "" {
		return "", fmt.Errorf("GET %s: not a CTS root document (no service_name)", cfg.ServiceURL)
	}
	return fmt.Sprintf("%s: %s %s", cfg.ServiceURL, root.ServiceName, root.Version), nil
}

func checkToken(ctx context.Context, cfg config.Config) (string, error) {
	u, err := url.Parse(strings.TrimSuffix(cfg.ServiceURL, "/") + protocol.Path)
	if err != nil {
		return "", err
	}
	u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, Proxy: http.ProxyFromEnvironment}
	conn, resp, err := d.DialContext(ctx, u.String(), http.Header{"Authorization": {"Bearer " + cfg.Token}})
	if err != nil {
		if resp != nil {
			switch resp.StatusCode {
			case http.StatusUnauthorized:
				return "", errors.New("the token is invalid or expired (HTTP 401)")
			case http.StatusForbidden:
				return "", errors.New("the token's user lacks the executor role (HTTP 403)")
			}
			return "", fmt.Errorf("agent endpoint: HTTP %d", resp.StatusCode)
		}
		return "", fmt.Errorf("agent endpoint: %w", err)
	}
	defer conn.Close()
	b, _ := protocol.Encode(protocol.Hello{JobID: checkJobID, Attempt: "cts-agent-check", AgentVersion: Version, DryRun: true})
	_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := conn.WriteMessage(websocket.TextMessage, b); err != nil {
		return "", fmt.Errorf("send hello: %w", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, frame, err := conn.ReadMessage()
	if err != nil {
		return "", fmt.Errorf("read the answer to a hello: %w", err)
	}
	msg, err := protocol.Decode(frame)
	if err != nil {
		return "", err
	}
	f, ok := msg.(*protocol.Fatal)
	if !ok || !strings.Contains(strings.ToLower(f.Message), "no job") {
		return "", fmt.Errorf("unexpected answer to a hello for a job that does not exist: %T %+v", msg, msg)
	}
	return "accepted by the agent endpoint (executor role)", nil
}

func checkS3(ctx context.Context, cfg config.Config) (string, error) {
	c, err := transfer.NewS3Client(ctx, transfer.S3Config{Endpoint: cfg.S3URL, AccessKey: cfg.S3AccessKey,
		SecretKey: cfg.S3Secret, Region: cfg.S3Region, Insecure: cfg.S3Insecure})
	if err != nil {
		return "", err
	}
	if bucket, _, _ := strings.Cut(cfg.S3LogPath, "/"); bucket != "" {
		if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err != nil {
			return "", fmt.Errorf("HeadBucket %s at %s: %w", bucket, cfg.S3URL, err)
		}
		return fmt.Sprintf("%s: log bucket %s reachable", cfg.S3URL, bucket), nil
	}
	out, err := c.ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil {
		return "", fmt.Errorf("ListBuckets at %s: %w", cfg.S3URL, err)
	}
	return fmt.Sprintf("%s: %d buckets visible (set S3_ERROR_LOG_PATH to check the log bucket)", cfg.S3URL, len(out.Buckets)), nil
}

func checkRuntime(ctx context.Context, cfg config.Config) (string, error) {
	kind := cfg.Runtime
	dk := container.NewDocker(container.DockerConfig{Socket: cfg.DockerSocket})
	if kind == "docker" || kind == "auto" {
		v, err := dk.Ping(ctx)
		switch {
		case err == nil:
			return fmt.Sprintf("docker: engine at %s answers (API %s)", cfg.DockerSocket, v), nil
		case kind == "docker":
			return "", fmt.Errorf("docker engine at %s: %w", cfg.DockerSocket, err)
		}
	}
	if kind == "auto" {
		kind = "oci"
	}
	engine, why := ociEngine(cfg.Node, kind)
	bin := cfg.RuncPath
	if engine == container.EngineCrun {
		bin = cfg.CrunPath
		if err := container.CrunUsable(); err != nil {
			return "", fmt.Errorf("oci: %w", err)
		}
	}
	if bin == "" {
		bin = engine
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return "", fmt.Errorf("oci: %w", err)
	}
	v, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("oci: %s --version: %w", path, err)
	}
	if err := os.MkdirAll(cfg.RuncRoot, 0o700); err != nil {
		return "", fmt.Errorf("oci: state root: %w", err)
	}
	f, err := os.CreateTemp(cfg.RuncRoot, ".cts-check-*")
	if err != nil {
		return "", fmt.Errorf("oci: state root %s not writable: %w", cfg.RuncRoot, err)
	}
	f.Close()
	os.Remove(f.Name())
	first, _, _ := strings.Cut(string(v), "\n")
	return fmt.Sprintf("oci: %s (%s; %s), root %s writable", first, path, why, cfg.RuncRoot), nil
}
