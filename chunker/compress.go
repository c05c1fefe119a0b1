package chunker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// Compression levels.
const (
	// MaxBuiltinLevel is the highest level compressed in-process by
	// klauspost/compress; levels above it run the zstd program.
	MaxBuiltinLevel = 4
	// MaxLevel is the highest level: the zstd program's -19.
	MaxLevel = 19
	// ZstdProgram is the program that compresses levels above MaxBuiltinLevel,
	// looked up in $PATH (Debian package zstd).
	ZstdProgram = "zstd"
)

// ErrNoZstd is returned by Publish, before it reads anything, when a level
// above MaxBuiltinLevel is asked for and the zstd program is not installed.
var ErrNoZstd = errors.New("chunker: the zstd program is not installed")

// compressor compresses one chunk's tar fragment into one zstd frame.
// compress is called from several goroutines at once.
type compressor interface {
	compress(ctx context.Context, index int, raw []byte) ([]byte, error)
	close()
}

// CheckLevel returns the error Publish would return, before reading
// anything, for Config.Level level: a level out of range, or ErrNoZstd.
// Callers use it to fail before they do work of their own.
func CheckLevel(level int) error {
	if err := checkRange(level); err != nil {
		return err
	}
	if level > MaxBuiltinLevel {
		_, err := lookZstd(level)
		return err
	}
	return nil
}

// checkRange checks a level; 0 stands for DefaultLevel.
func checkRange(level int) error {
	if level != 0 && (level < 1 || level > MaxLevel) {
		return fmt.Errorf("chunker: compression level %d: use 1 (fastest) to %d (smallest; levels above %d need the zstd program)",
			level, MaxLevel, MaxBuiltinLevel)
	}
	return nil
}

// lookZstd returns the path of the zstd program, which level needs.
func lookZstd(level int) (string, error) {
	path, err := exec.LookPath(ZstdProgram)
	if err != nil {
		return "", fmt.Errorf("%w: level %d compresses with it (%v); install it with `apt-get install zstd` or use a level from 1 to %d",
			ErrNoZstd, level, err, MaxBuiltinLevel)
	}
	return path, nil
}

// newCompressor returns the compressor for cfg.Level; cfg has its defaults.
func newCompressor(cfg Config) (compressor, error) {
	if cfg.Level > MaxBuiltinLevel {
		path, err := lookZstd(cfg.Level)
		if err != nil {
			return nil, err
		}
		return &zstdCommand{path: path, level: cfg.Level}, nil
	}
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.EncoderLevel(cfg.Level)),
		zstd.WithEncoderConcurrency(cfg.Workers),
		zstd.WithWindowSize(windowFor(cfg.ChunkMax)),
		zstd.WithEncoderCRC(true),
		zstd.WithLowerEncoderMem(true))
	if err != nil {
		return nil, err
	}
	return builtinEncoder{enc}, nil
}

// newChunkDecoder returns a decoder of chunks with the limits every
// workstation's Applier has (concurrency as zstd.WithDecoderConcurrency).
func newChunkDecoder(concurrency int) (*zstd.Decoder, error) {
	return zstd.NewReader(nil, zstd.WithDecoderConcurrency(concurrency),
		zstd.WithDecoderMaxMemory(MaxChunkRawSize), zstd.WithDecoderMaxWindow(MaxChunkRawSize))
}

// checkFrame checks that z starts with a zstd frame header that gives the
// content size, size.
func checkFrame(z []byte, size int) error {
	var h zstd.Header
	if err := h.Decode(z); err != nil {
		return fmt.Errorf("not a zstd frame: %w", err)
	}
	if !h.HasFCS || h.FrameContentSize != uint64(size) {
		return fmt.Errorf("a zstd frame of %d bytes (content size given: %v), not %d", h.FrameContentSize, h.HasFCS, size)
	}
	return nil
}

// windowFor returns the zstd window for chunks of at most max bytes: a power
// of two at least max, so a chunk is compressed as one window.
func windowFor(max int64) int {
	w := int64(1) << 20
	for w < max {
		w <<= 1
	}
	return int(w)
}

// builtinEncoder compresses with klauspost/compress, levels 1 to 4.
type builtinEncoder struct{ enc *zstd.Encoder }

func (e builtinEncoder) compress(_ context.Context, _ int, raw []byte) ([]byte, error) {
	return e.enc.EncodeAll(raw, make([]byte, 0, len(raw)/2+1024)), nil
}

func (e builtinEncoder) close() { e.enc.Close() }

// zstdCommand compresses each chunk by running the zstd program on it, one
// process per chunk, levels 5 to 19.
type zstdCommand struct {
	path  string
	level int
}

// args returns zstd's arguments for a chunk of size bytes. The frame is what
// builtinEncoder writes: one frame with the content size and a checksum.
// --stream-size puts the size in the frame header and lets zstd fit its
// window to the chunk (at most 8 MiB at level 19), -T1 keeps each process on
// one core (Config.Workers says how many run), whatever ZSTD_NBTHREADS says.
func (z *zstdCommand) args(size int) []string {
	return []string{"-q", "-" + strconv.Itoa(z.level), "-T1", "--check",
		"--stream-size=" + strconv.Itoa(size), "-c", "-"}
}

func (z *zstdCommand) compress(ctx context.Context, index int, raw []byte) ([]byte, error) {
	cmd := exec.CommandContext(ctx, z.path, z.args(len(raw))...)
	cmd.Stdin = bytes.NewReader(raw)
	out := bytes.NewBuffer(make([]byte, 0, len(raw)/2+1024))
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = out, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("compress chunk %d: %w", index, ctx.Err())
	}
	if err == nil {
		// What Publish signs must decode on every workstation: check at
		// least that zstd wrote a frame of the whole chunk.
		if ferr := checkFrame(out.Bytes(), len(raw)); ferr != nil {
			err = fmt.Errorf("its output is %w", ferr)
		}
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2000 {
			msg = "..." + msg[len(msg)-2000:]
		}
		if msg == "" {
			msg = "(nothing on stderr)"
		}
		return nil, fmt.Errorf("chunker: compress chunk %d (%d bytes) with %s %s: %w: %s",
			index, len(raw), z.path, strings.Join(cmd.Args[1:], " "), err, msg)
	}
	return out.Bytes(), nil
}

func (z *zstdCommand) close() {}

// reuser asks Config.Reuse for a chunk compressed before and checks that it
// decodes to the chunk's bytes.
type reuser struct {
	find func(rawBLAKE3 [32]byte, rawSize int64) []byte
	dec  *zstd.Decoder
}

func newReuser(find func([32]byte, int64) []byte) (*reuser, error) {
	// The Applier's limits: what is reused must decode on workstations.
	dec, err := newChunkDecoder(0)
	if err != nil {
		return nil, err
	}
	return &reuser{find: find, dec: dec}, nil
}

// get returns the compressed chunk that Reuse offers for raw, whose BLAKE3
// sum is sum, if it decodes to raw; or nil. buf is a buffer to decode in,
// returned for the next call.
func (r *reuser) get(sum [32]byte, raw, buf []byte) (z, _ []byte) {
	z = r.find(sum, int64(len(raw)))
	if z == nil {
		return nil, buf
	}
	if checkFrame(z, len(raw)) != nil {
		return nil, buf
	}
	buf, err := r.dec.DecodeAll(z, buf[:0])
	if err != nil || !bytes.Equal(buf, raw) {
		return nil, buf
	}
	return z, buf
}

func (r *reuser) close() { r.dec.Close() }
