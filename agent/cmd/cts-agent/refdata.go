package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/kbase/cts/agent/internal/config"
	"github.com/kbase/cts/agent/internal/refdata"
	"github.com/kbase/cts/shared/staging"
	"github.com/kbase/cts/shared/transfer"
)

// refdataReportTimeout bounds the report of the final state, retries included; it runs even
// when ctx ended (a stop signal), so the coordinator learns why the staging ended.
const refdataReportTimeout = 2 * time.Minute

// runRefdata is the agent's refdata mode (CTS_AGENT_MODE=refdata), started by a launcher as
// the coordinator's staging task: it stages one reference data object into
// REFDATA_HOST_PATH (agent/internal/refdata) and reports with PUT
// /external_exec/refdata/{id}/{cluster}/update/{state} (shared/staging): download_submitted
// when it starts and every staging.HeartbeatInterval while it works (the coordinator's
// reconciler ends a staging whose stager went silent), then complete or error. Exit 0 when
// the final state was reported (whatever it was), 1 when it could not be, 2 on bad
// configuration.
func runRefdata(ctx context.Context, lookup func(string) (string, bool), log *slog.Logger) (int, error) {
	cfg, err := config.RefdataFromEnv(lookup)
	if err != nil {
		return 2, fmt.Errorf("configuration: %w", err)
	}
	log = log.With("refdata_id", cfg.ID, "site", cfg.Cluster)
	start := time.Now()
	hctx, stopHeartbeat := context.WithCancel(ctx)
	beats := make(chan struct{})
	go func() {
		defer close(beats)
		heartbeat(hctx, http.DefaultClient, cfg, log)
	}()
	res, serr := stageRefdata(ctx, cfg)
	stopHeartbeat()
	<-beats
	state, upd := staging.Complete, staging.Update{Attempt: cfg.Attempt}
	if serr != nil {
		state, upd.AdminError = staging.Error, serr.Error()
		log.Error("refdata staging failed", "error", serr)
	} else {
		log.Info("refdata staged", "dir", res.Dir, "files", len(res.Manifest.Files), "bytes", res.Manifest.Bytes,
			"existing", res.Existing, "seconds", time.Since(start).Seconds())
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refdataReportTimeout)
	defer cancel()
	if err := reportRefdata(rctx, http.DefaultClient, cfg, state, upd); err != nil {
		return 1, fmt.Errorf("report refdata %s: %w", state, err)
	}
	return 0, nil
}

func stageRefdata(ctx context.Context, cfg config.Refdata) (*refdata.Result, error) {
	s3c, err := transfer.NewS3Client(ctx, transfer.S3Config{Endpoint: cfg.S3URL, AccessKey: cfg.S3AccessKey,
		SecretKey: cfg.S3Secret, Region: cfg.S3Region, Insecure: cfg.S3Insecure})
	if err != nil {
		return nil, fmt.Errorf("s3 client: %w", err)
	}
	return refdata.Stage(ctx, refdata.Config{ID: cfg.ID, S3Path: cfg.S3Path, CRC64NVME: cfg.CRC64NVME, Unpack: cfg.Unpack,
		HostPath: cfg.HostPath, MaxBytes: cfg.MaxBytes, MaxFiles: cfg.MaxFiles}, transfer.New(s3c, transfer.Config{}))
}

// heartbeat reports download_submitted now and every staging.HeartbeatInterval until ctx
// ends. A failed heartbeat is logged, never fatal: the next one may pass, and the final report
// retries on its own.
func heartbeat(ctx context.Context, hc *http.Client, cfg config.Refdata, log *slog.Logger) {
	t := time.NewTicker(staging.HeartbeatInterval)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, staging.HeartbeatInterval)
		err := putOnce(rctx, hc, updateURL(cfg, staging.DownloadSubmitted), cfg.Token, mustJSON(staging.Update{Attempt: cfg.Attempt}))
		cancel()
		if err != nil && ctx.Err() == nil {
			log.Warn("refdata heartbeat failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func updateURL(cfg config.Refdata, state staging.State) string {
	return strings.TrimRight(cfg.ServiceURL, "/") + staging.UpdatePath(cfg.ID, cfg.Cluster, state)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // a staging.Update always marshals
	}
	return b
}

// errRefused is a report the coordinator answered with a 4xx: retrying cannot help.
var errRefused = errors.New("refused by the coordinator")

// reportRefdata sends the state, retrying network failures and 5xx answers with backoff
// until ctx ends.
func reportRefdata(ctx context.Context, hc *http.Client, cfg config.Refdata, state staging.State, upd staging.Update) error {
	u := updateURL(cfg, state)
	body := mustJSON(upd)
	wait := 500 * time.Millisecond
	for {
		err := putOnce(ctx, hc, u, cfg.Token, body)
		if err == nil || errors.Is(err, errRefused) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last attempt: %w)", context.Cause(ctx), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 15*time.Second)
	}
}

func putOnce(ctx context.Context, hc *http.Client, u, token string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return fmt.Errorf("%w: %s: %s", errRefused, resp.Status, bytes.TrimSpace(msg))
	}
	return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
}
