package devmode

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/kbase/cts/coordinator/client"
	"github.com/kbase/cts/shared/checksum"
	"github.com/kbase/cts/test/imagebuild"
)

// The sample images a new dev site registers, as paths below its registry
// (CTS_REGISTRY/DemoImage).
const (
	// DemoImage runs cts-demo-tool: `--container N FILE...` writes a small JSON summary of
	// each input (lines, bytes, GC fraction, SHA-256) and a per-container list.
	DemoImage = "cts/demo:1.0"
	// SeqKitImage runs a small stand-in for SeqKit that implements `seqkit stats` (the
	// arguments and tabular columns of the real tool), so the documentation's SeqKit example
	// runs on a dev site as written.
	SeqKitImage = "cts/seqkit:0.1.0"
)

// SamplesPrefix is the folder of the sample inputs in the data bucket, "cts-data/samples/".
// They are for every user to read; nobody's job writes there.
const SamplesPrefix = DataBucket + "/samples/"

// SampleGenomes are the sample inputs: gzipped FASTA files named after the genomes of the
// Python service's examples (the content is made up), under SamplesPrefix.
var SampleGenomes = []string{
	"genomes/GCA_000008085.1/GCA_000008085.1_ASM808v1_genomic.fna.gz",
	"genomes/GCA_000010565.1/GCA_000010565.1_ASM1056v1_genomic.fna.gz",
	"genomes/GCA_000145985.1/GCA_000145985.1_ASM14598v1_genomic.fna.gz",
	"genomes/GCA_000147015.1/GCA_000147015.1_ASM14701v1_genomic.fna.gz",
}

// SampleRefdata is a small reference data archive under SamplesPrefix (a .tar.gz holding
// demo_db/), for trying reference data registration.
const SampleRefdata = "refdata/demo_db_v1.tar.gz"

// Samples are the programs the sample images run (static binaries).
type Samples struct {
	// DemoTool is the cts-demo-tool binary (test/demo/tool).
	DemoTool string
	// SeqKit is the cts-demo-seqkit binary (test/demo/seqkit).
	SeqKit string
}

// seedTimeout bounds pushing, registering and uploading the samples.
const seedTimeout = 2 * time.Minute

// seed pushes and registers the sample images and uploads the sample inputs. Each step is
// skipped when already done, so a start that failed half way can seed again.
func (s *Samples) seed(ctx context.Context, e *Env) error {
	ctx, cancel := context.WithTimeout(ctx, seedTimeout)
	defer cancel()
	admin, err := client.New(e.URL, e.AdminToken, client.WithUserAgent("cts-dev"))
	if err != nil {
		return err
	}
	if err := waitReady(ctx, admin); err != nil {
		return err
	}
	images := []struct {
		path, bin, inImage, notes string
	}{
		{DemoImage, s.DemoTool, "/usr/bin/cts-demo-tool", "The CTS demo: summarises text files (cts-demo-tool --container N FILE...)."},
		{SeqKitImage, s.SeqKit, "/usr/bin/seqkit", "A stand-in for SeqKit that implements `seqkit stats` (dev sites only)."},
	}
	for _, im := range images {
		ref := e.Stack.Registry.Host() + "/" + im.path
		if _, err := admin.Image(ctx, ref); err == nil {
			continue
		}
		data, err := os.ReadFile(im.bin)
		if err != nil {
			return fmt.Errorf("image %s: %w (build it first: make build)", im.path, err)
		}
		img, err := imagebuild.Build([]imagebuild.File{{Path: im.inImage, Mode: 0o755, Data: data}},
			[]string{im.inImage}, []string{"PATH=/usr/bin:/bin"})
		if err != nil {
			return fmt.Errorf("image %s: %w", im.path, err)
		}
		if _, err := imagebuild.Push(ctx, img, ref); err != nil {
			return err
		}
		if _, err := admin.RegisterImage(ctx, ref, client.ImageRegistration{UsageNotes: im.notes}); err != nil {
			return fmt.Errorf("register %s: %w", ref, err)
		}
	}
	s3c := e.Stack.S3.Client()
	r := rand.New(rand.NewPCG(12, 34)) // the same samples on every site
	for i, key := range SampleGenomes {
		if err := putIfMissing(ctx, s3c, strings.TrimPrefix(SamplesPrefix, DataBucket+"/")+key, gz(fasta(r, i))); err != nil {
			return err
		}
	}
	db, err := refdataArchive()
	if err != nil {
		return err
	}
	return putIfMissing(ctx, s3c, strings.TrimPrefix(SamplesPrefix, DataBucket+"/")+SampleRefdata, db)
}

// waitReady waits until the coordinator answers (it was started just before).
func waitReady(ctx context.Context, c *client.Client) error {
	for {
		_, err := c.Root(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the coordinator did not answer: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// putIfMissing stores b as key of the data bucket with its CRC64/NVME, unless the key exists.
func putIfMissing(ctx context.Context, c *s3.Client, key string, b []byte) error {
	_, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(DataBucket), Key: aws.String(key)})
	if err == nil {
		return nil
	}
	var nf *types.NotFound
	if !errors.As(err, &nf) {
		return fmt.Errorf("head %s/%s: %w", DataBucket, key, err)
	}
	crc := checksum.Encode(checksum.Sum(b))
	_, err = c.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(DataBucket), Key: aws.String(key), Body: bytes.NewReader(b),
		ContentLength:     aws.Int64(int64(len(b))),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc64nvme, ChecksumCRC64NVME: aws.String(crc),
	})
	if err != nil {
		return fmt.Errorf("upload %s/%s: %w", DataBucket, key, err)
	}
	return nil
}

// fasta makes a small multi-record FASTA genome: a few contigs of a few thousand bases.
func fasta(r *rand.Rand, n int) []byte {
	var b strings.Builder
	for c := range 2 + n%3 {
		fmt.Fprintf(&b, ">contig_%d_%d sample genome %d, contig %d\n", n, c+1, n, c+1)
		length := 1500 + r.IntN(4000)
		for i := 0; i < length; i += 60 {
			for j := i; j < min(i+60, length); j++ {
				b.WriteByte("ACGT"[r.IntN(4)])
			}
			b.WriteByte('\n')
		}
	}
	return []byte(b.String())
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Bytes()
}

// refdataArchive is a .tar.gz holding demo_db/ with two small files.
func refdataArchive() ([]byte, error) {
	files := []struct{ name, body string }{
		{"demo_db/README", "A sample reference database for CTS dev sites.\n"},
		{"demo_db/markers.tsv", "marker\tgc\nm1\t0.41\nm2\t0.52\nm3\t0.66\n"},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "demo_db/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(0, 0)}); err != nil {
		return nil, err
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f.body)), ModTime: time.Unix(0, 0)}); err != nil {
			return nil, err
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return gz(buf.Bytes()), nil
}
