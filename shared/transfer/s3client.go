package transfer

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// S3Config says how to reach an S3 endpoint.
type S3Config struct {
	// Endpoint is the base URL, e.g. "https://s3.example.org" or "http://127.0.0.1:9000".
	Endpoint string
	// AccessKey and SecretKey are static credentials. Never log SecretKey.
	AccessKey string
	SecretKey string
	// Region defaults to us-east-1.
	Region string
	// Insecure turns TLS certificate verification off.
	Insecure bool
}

// sdkMaxAttempts is the SDK's own retry budget for small calls (Head, Create, Complete,
// Abort, Delete). Data streams turn it off and use the Client's retry logic instead.
const sdkMaxAttempts = 5

// NewS3Client returns an S3 client for cfg: path-style addressing, static credentials, the
// SDK's checksum calculation and validation only when an operation requires it (this package
// computes CRC64/NVME itself and hands S3 the value), TLS verification off when cfg.Insecure,
// and a standard retryer for small calls. It does no I/O; ctx is not retained. The client
// ignores the AWS_* environment and shared config files on purpose: the agent must talk to
// exactly the endpoint it was given.
func NewS3Client(ctx context.Context, cfg S3Config) (*s3.Client, error) {
	_ = ctx
	opts, err := s3Options(cfg)
	if err != nil {
		return nil, err
	}
	return s3.New(opts), nil
}

// s3Options builds the client options of NewS3Client (tests wrap its HTTPClient).
func s3Options(cfg S3Config) (s3.Options, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return s3.Options{}, fmt.Errorf("s3 client: endpoint %q must be an http(s) URL", cfg.Endpoint)
	}
	if cfg.AccessKey == "" || cfg.SecretKey == "" {
		return s3.Options{}, fmt.Errorf("s3 client: access key and secret key are required")
	}
	region := cfg.Region
	if region == "" {
		region = "us-east-1"
	}
	opts := s3.Options{
		Region:       region,
		BaseEndpoint: aws.String(cfg.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(cfg.AccessKey, cfg.SecretKey, ""),
	}
	TuneOptions(&opts)
	if cfg.Insecure {
		t := opts.HTTPClient.(*http.Client).Transport.(*http.Transport)
		if t.TLSClientConfig == nil {
			t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		t.TLSClientConfig.InsecureSkipVerify = true //nolint:gosec // the operator asked for it
	}
	return opts, nil
}

// TuneOptions sets what this package's data path needs on the options of an S3 client,
// whatever its endpoint and credentials come from (NewS3Client, or the AWS shared
// configuration for the cts CLI): an HTTP client with enough idle connections for parallel
// transfers that does not follow redirects, the SDK's checksum calculation and validation
// only when an operation requires it (this package computes CRC64/NVME itself and hands S3
// the value), and a standard retryer for small calls without a client-side retry quota.
// Use it as an option function of s3.New or s3.NewFromConfig.
func TuneOptions(o *s3.Options) {
	// The SDK's default transport (timeouts, keep-alives), tuned, in a plain http.Client that
	// does not follow redirects (as the SDK's own does not).
	t := awshttp.NewBuildableClient().GetTransport()
	// DownloadAll × parts in flight exceed the default of 2 idle connections per host, which
	// would make many requests pay a new TCP (and TLS) handshake.
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 256
	t.IdleConnTimeout = 90 * time.Second
	o.HTTPClient = &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
		so.MaxAttempts = sdkMaxAttempts
		so.MaxBackoff = backoffCap
		// The client-side retry quota would turn a burst of failures across many parallel
		// transfers into "retry quota exceeded" errors.
		so.RateLimiter = ratelimit.None
	})
}

// dataCall is the per-operation option for calls that carry file data (GetObject, PutObject,
// UploadPart): no SDK retries (the Client retries and resumes itself, counting attempts), and
// no SigV4 payload SHA-256 (it costs more than the transfer on a fast link; CRC64/NVME
// protects the content instead).
func dataCall(o *s3.Options) {
	o.RetryMaxAttempts = 1
	o.APIOptions = append(o.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
}

// readCall is the per-operation option for GetObject: no SDK retries. GetObject has no
// payload to hash, so the signing is left alone.
func readCall(o *s3.Options) {
	o.RetryMaxAttempts = 1
}
