package untar

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Compression is how a stream is compressed.
type Compression int

const (
	// Detect reads the stream's magic bytes (gzip, zstd, else plain): media types and file
	// names are not trusted to be right.
	Detect Compression = iota
	Plain
	Gzip
	Zstd
)

// maxZstdWindow bounds the memory one zstd stream may ask for (zstd --long=29 and below).
const maxZstdWindow = 512 << 20

// Decompress returns the decompressed stream of r. Closing it releases the decoder, not r.
// The gzip and zstd readers check their own trailers (CRC-32, xxhash) at the end of the
// stream, which Extract always reads.
func Decompress(r io.Reader, c Compression) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	if c == Detect {
		magic, err := br.Peek(4)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("decompress: %w", err)
		}
		switch {
		case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
			c = Gzip
		case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
			c = Zstd
		default:
			c = Plain
		}
	}
	switch c {
	case Gzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, nil
	case Zstd:
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxZstdWindow),
			zstd.WithDecoderMaxMemory(maxZstdWindow))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zr.IOReadCloser(), nil
	case Plain:
		return io.NopCloser(br), nil
	}
	return nil, fmt.Errorf("decompress: unknown compression %d", c)
}
