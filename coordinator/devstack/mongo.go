package devstack

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// Wire protocol constants (MongoDB OP_MSG, https://www.mongodb.com/docs/manual/reference/mongodb-wire-protocol/).
const (
	wireHeaderLen  = 16
	opMsg          = 2013
	opQuery        = 2004
	msgMoreToCome  = 1 << 1
	maxWireMessage = 64 << 20 // above the server's advertised maxMessageSizeBytes (48 MB)
)

// Mongo is an embedded FerretDB v1 (SQLite files under one directory) reached through a
// serialising wire proxy. Clients must use URI, which points at the proxy.
type Mongo struct {
	uri string

	ferretStop context.CancelFunc
	ferretDone chan struct{}

	ln      net.Listener
	backend string

	// mu serialises wire round trips across all client connections: FerretDB runs a
	// conditional update as "query, then write by _id" without re-checking the filter, so two
	// concurrent findAndModify calls on one document can both win. Nothing runs beside a write,
	// which makes every command atomic, as a real MongoDB is per document. Reads share it and
	// go ahead of the writes waiting (SetReadFirst, on by default): see queueLock.
	mu queueLock

	connMu sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	// points counts the point commands run as a probe and a narrowed command.
	points atomic.Int64
	// ids makes the _id index FerretDB's lookups can use (idindex.go).
	ids *idIndexes

	// parallelReads lets read-only commands bypass mu (SetParallelReads).
	parallelReads atomic.Bool
	// stats counts what went through the proxy (Stats).
	statsMu sync.Mutex
	stats   MongoStats
	// held is the last commands that held the lock, by their number (seq), so that a read
	// that waited can tell behind what (MongoStats.ReadWaitBehind).
	seq  int64
	held [heldRing]heldCmd
}

// heldRing is how many of the last serialised commands the proxy remembers.
const heldRing = 1024

// heldCmd is one serialised command: "<command> <collection>" and when it held the lock.
type heldCmd struct {
	key        string
	start, end time.Time
}

// MongoStats is what went through the proxy since it started: the commands by name, how long
// serialised requests waited for the lock, and how long FerretDB took to answer (both summed
// over all requests). They tell how many round trips a request of the coordinator costs and
// how much of its time is the proxy's queue rather than the server.
type MongoStats struct {
	// Commands counts the requests by command name ("find", "insert", ...; "" when the
	// request could not be parsed).
	Commands map[string]int64
	// CommandServer is the time FerretDB took to answer, summed by command name.
	CommandServer map[string]time.Duration
	// Serialised and Parallel count the requests that took the lock and those that did not
	// (read-only commands with SetParallelReads on).
	Serialised, Parallel int64
	// LockWait is the time requests waited for the lock; Server the time from forwarding a
	// request to FerretDB's (last) reply.
	LockWait, Server time.Duration
	// Begun counts the requests by command name when they arrive (Commands counts them when
	// they end): a command that holds the proxy shows in Begun and not yet in Commands.
	Begun map[string]int64
	// Running is the serialised command FerretDB is running now ("" when none) and
	// RunningSince when it was forwarded: what holds the proxy during a stall.
	Running      string
	RunningSince time.Time
	// Scans counts the reads FerretDB answers by decoding every document of their
	// collection (any filter but exactly {_id: <string or ObjectID>}: see pushdown.go), by
	// "<command> <collection>"; ScanServer is FerretDB's time for them. What a periodic
	// query costs here grows with its collection.
	Scans      map[string]int64
	ScanServer time.Duration
	// ByCollection counts the requests by "<command> <collection>" (the command alone when it
	// names none) and CollectionServer is FerretDB's time for them: which collections the
	// site's commands go to, and what each kind costs.
	ByCollection     map[string]int64
	CollectionServer map[string]time.Duration
	// ReadWaitBehind is, for the read-only commands that waited for the lock, what held it
	// meanwhile: their waiting time split by the "<command> <collection>" that held the lock
	// during it (a command counts for the part of the wait it held the lock), and
	// ReadWaitBehindN how many times a read met each. What a read queues behind.
	ReadWaitBehind  map[string]time.Duration
	ReadWaitBehindN map[string]int64
	// ReadLockWait is the part of LockWait that read-only commands waited.
	ReadLockWait time.Duration
}

// Stats returns a copy of the proxy's counters.
func (m *Mongo) Stats() MongoStats {
	m.statsMu.Lock()
	defer m.statsMu.Unlock()
	st := m.stats
	st.Commands = maps.Clone(m.stats.Commands)
	st.CommandServer = maps.Clone(m.stats.CommandServer)
	st.Begun = maps.Clone(m.stats.Begun)
	st.Scans = maps.Clone(m.stats.Scans)
	st.ByCollection = maps.Clone(m.stats.ByCollection)
	st.CollectionServer = maps.Clone(m.stats.CollectionServer)
	st.ReadWaitBehind = maps.Clone(m.stats.ReadWaitBehind)
	st.ReadWaitBehindN = maps.Clone(m.stats.ReadWaitBehindN)
	return st
}

// subMap returns a minus b, without the keys whose difference is zero.
func subMap[V int64 | time.Duration](a, b map[string]V) map[string]V {
	d := map[string]V{}
	for k, v := range a {
		if n := v - b[k]; n != 0 {
			d[k] = n
		}
	}
	return d
}

// Sub returns the counters of st minus those of an earlier snapshot.
func (st MongoStats) Sub(earlier MongoStats) MongoStats {
	d := MongoStats{Serialised: st.Serialised - earlier.Serialised,
		Parallel: st.Parallel - earlier.Parallel, LockWait: st.LockWait - earlier.LockWait, Server: st.Server - earlier.Server,
		Running: st.Running, RunningSince: st.RunningSince,
		ScanServer: st.ScanServer - earlier.ScanServer, ReadLockWait: st.ReadLockWait - earlier.ReadLockWait}
	d.Scans = subMap(st.Scans, earlier.Scans)
	d.Begun = subMap(st.Begun, earlier.Begun)
	d.Commands = subMap(st.Commands, earlier.Commands)
	d.CommandServer = subMap(st.CommandServer, earlier.CommandServer)
	d.ByCollection = subMap(st.ByCollection, earlier.ByCollection)
	d.CollectionServer = subMap(st.CollectionServer, earlier.CollectionServer)
	d.ReadWaitBehind = subMap(st.ReadWaitBehind, earlier.ReadWaitBehind)
	d.ReadWaitBehindN = subMap(st.ReadWaitBehindN, earlier.ReadWaitBehindN)
	return d
}

// SetParallelReads, when on, lets read-only commands (find, getMore, count, distinct, an
// aggregate without $out or $merge, and the handshake and listing commands) go to FerretDB
// without waiting for the proxy's lock, concurrently with each other and with the one
// serialised command in flight. Every write still goes one at a time under the lock, so
// conditional updates stay atomic; a read sees each document before or after a write (FerretDB
// writes a document in one SQLite statement), as on MongoDB. It is a measurement mode (how much
// of a request's time is the proxy's queue), off by default; the dev site never turns it on.
func (m *Mongo) SetParallelReads(on bool) { m.parallelReads.Store(on) }

// SetReadFirst, when on (the default), lets read-only commands share the proxy's lock with
// each other and go ahead of the writes waiting for it (at most maxOvertakes reads while a
// write waits); a write still runs alone, so conditional updates stay atomic. Off, the lock
// serves one command at a time in the order they came, reads included, as the proxy first
// did (queueLock).
func (m *Mongo) SetReadFirst(on bool) { m.mu.setReadFirst(on) }

// begin counts a request as it arrives.
func (m *Mongo) begin(cmd string) {
	m.statsMu.Lock()
	defer m.statsMu.Unlock()
	if m.stats.Begun == nil {
		m.stats.Begun = map[string]int64{}
	}
	m.stats.Begun[cmd]++
}

// running records the serialised command forwarded now ("" once it has ended).
func (m *Mongo) running(cmd string, since time.Time) {
	m.statsMu.Lock()
	m.stats.Running, m.stats.RunningSince = cmd, since
	m.statsMu.Unlock()
}

func (m *Mongo) count(cmd, key, scan string, parallel bool, wait, server time.Duration) {
	m.statsMu.Lock()
	defer m.statsMu.Unlock()
	if m.stats.Commands == nil {
		m.stats.Commands, m.stats.CommandServer = map[string]int64{}, map[string]time.Duration{}
		m.stats.Scans = map[string]int64{}
		m.stats.ByCollection, m.stats.CollectionServer = map[string]int64{}, map[string]time.Duration{}
	}
	if scan != "" {
		m.stats.Scans[scan]++
		m.stats.ScanServer += server
	}
	m.stats.Commands[cmd]++
	m.stats.CommandServer[cmd] += server
	m.stats.ByCollection[key]++
	m.stats.CollectionServer[key] += server
	if parallel {
		m.stats.Parallel++
	} else {
		m.stats.Serialised++
	}
	m.stats.LockWait += wait
	m.stats.Server += server
}

// acquired numbers a serialised command that has just taken the lock; arrived is the number
// of the last command that had taken it when this one arrived.
func (m *Mongo) acquired() (seq int64) {
	m.statsMu.Lock()
	defer m.statsMu.Unlock()
	m.seq++
	return m.seq
}

// lastSeq is the number of the last command that took the lock.
func (m *Mongo) lastSeq() int64 {
	m.statsMu.Lock()
	defer m.statsMu.Unlock()
	return m.seq
}

// released records serialised command seq ("<command> <collection>") as having held the
// lock from start to end. The caller still holds the lock, so a command that waited finds
// every command before it recorded.
func (m *Mongo) released(seq int64, key string, start, end time.Time) {
	m.statsMu.Lock()
	m.held[seq%heldRing] = heldCmd{key: key, start: start, end: end}
	m.statsMu.Unlock()
}

// waitedBehind splits the wait of a read-only command, from arrival to start (having taken
// the lock as command seq, when command arrived was the last to have taken it), by the
// commands that held the lock during it.
func (m *Mongo) waitedBehind(arrived, seq int64, arrival, start time.Time) {
	m.statsMu.Lock()
	defer m.statsMu.Unlock()
	if m.stats.ReadWaitBehind == nil {
		m.stats.ReadWaitBehind, m.stats.ReadWaitBehindN = map[string]time.Duration{}, map[string]int64{}
	}
	m.stats.ReadLockWait += start.Sub(arrival)
	for i := max(arrived, seq-heldRing+1, 1); i < seq; i++ {
		h := m.held[i%heldRing]
		from, to := h.start, h.end
		if from.Before(arrival) {
			from = arrival
		}
		if to.After(start) {
			to = start
		}
		if to.After(from) {
			m.stats.ReadWaitBehind[h.key] += to.Sub(from)
			m.stats.ReadWaitBehindN[h.key]++
		}
	}
}

// StartMongo starts FerretDB with its SQLite databases in dir (created if missing) and the
// serialising proxy in front of it, FerretDB on a 127.0.0.1 ephemeral port, the proxy (the
// address clients keep) on the At address when it is free, else on a port outside the
// kernel's ephemeral range. ctx bounds the start only; the servers run until Close. The
// databases survive a restart on the same dir.
func StartMongo(ctx context.Context, dir string, opts ...Option) (*Mongo, error) {
	o := startOpts(opts)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start mongo: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("start mongo: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("start mongo: %w", err)
	}
	f, err := ferretdb.New(&ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: "127.0.0.1:0"},
		Logger:   slog.New(slog.DiscardHandler),
		Handler:  "sqlite",
		// Each write commits a SQLite transaction; in WAL mode, synchronous=NORMAL makes the
		// commit skip its fsync (the WAL is synced at checkpoints): a dev machine's crash may
		// lose the last writes, never corrupt the files. FULL cost a disk flush per MongoDB
		// write, milliseconds each on a busy disk. journal_mode stays FerretDB's (WAL).
		SQLiteURL: "file:" + abs + "/?_pragma=synchronous(normal)",
	})
	if err != nil {
		return nil, fmt.Errorf("start mongo: ferretdb: %w", err)
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	m := &Mongo{
		ferretStop: stop,
		ferretDone: make(chan struct{}),
		conns:      make(map[net.Conn]struct{}),
		ids:        newIDIndexes(abs),
	}
	// Read-first by default (queue.go). A `make test` under CPU hogs once failed with a
	// refdata record read as created after its launch was logged, which 699309f took for a
	// stale read and answered by making first come, first served the default; it was a
	// test's race (the task started before its launch was recorded, 595299a), and
	// TestMongoReadsSeeAcknowledgedWrites finds no read missing an acknowledged write in
	// either order.
	m.mu.setReadFirst(true)
	go func() {
		defer close(m.ferretDone)
		_ = f.Run(runCtx) // always nil; it returns once runCtx is cancelled
	}()
	// Listen happened in ferretdb.New, so MongoDBURI does not block.
	u, err := url.Parse(f.MongoDBURI())
	if err != nil {
		m.stopFerret()
		return nil, fmt.Errorf("start mongo: ferretdb uri: %w", err)
	}
	m.backend = u.Host
	m.ln, err = listenPreferred(o.addr)
	if err != nil {
		m.stopFerret()
		return nil, fmt.Errorf("start mongo: proxy: %w", err)
	}
	m.uri = "mongodb://" + m.ln.Addr().String() + "/"
	m.wg.Add(1)
	go m.acceptLoop()
	return m, nil
}

// PointCommands returns how many conditional commands on one _id the proxy has run without
// reading the whole collection (see pushdown.go).
func (m *Mongo) PointCommands() int64 { return m.points.Load() }

// URI returns the mongodb:// URI of the proxy; it is the only address clients may use.
func (m *Mongo) URI() string { return m.uri }

// Close stops the proxy (dropping its connections) and then FerretDB. It is idempotent.
func (m *Mongo) Close() error {
	m.closeOnce.Do(func() {
		m.connMu.Lock()
		m.closed = true
		for c := range m.conns {
			_ = c.Close()
		}
		m.connMu.Unlock()
		if err := m.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			m.closeErr = fmt.Errorf("close mongo proxy: %w", err)
		}
		m.wg.Wait()
		m.stopFerret()
	})
	return m.closeErr
}

func (m *Mongo) stopFerret() {
	m.ferretStop()
	<-m.ferretDone
	m.ids.close()
}

// TestMongo starts a Mongo in tb.TempDir and closes it on tb.Cleanup; it calls tb.Fatal if
// the start fails.
func TestMongo(tb testing.TB) *Mongo {
	tb.Helper()
	m, err := StartMongo(tb.Context(), tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := m.Close(); err != nil {
			tb.Error(err)
		}
	})
	return m
}

func (m *Mongo) acceptLoop() {
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			return // listener closed
		}
		if !m.track(c) {
			_ = c.Close()
			return
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			defer m.untrack(c)
			m.serve(c)
		}()
	}
}

// track registers a connection so Close can drop it; it reports false once closing.
func (m *Mongo) track(c net.Conn) bool {
	m.connMu.Lock()
	defer m.connMu.Unlock()
	if m.closed {
		return false
	}
	m.conns[c] = struct{}{}
	return true
}

func (m *Mongo) untrack(c net.Conn) {
	m.connMu.Lock()
	delete(m.conns, c)
	m.connMu.Unlock()
	_ = c.Close()
}

// serve proxies one client connection over its own backend connection. Requests are read
// without the lock (a slow client holds nobody up); the lock covers forwarding the request
// and every reply to it.
func (m *Mongo) serve(client net.Conn) {
	backend, err := net.Dial("tcp", m.backend)
	if err != nil {
		return // the driver sees the closed connection and reports it
	}
	if !m.track(backend) {
		_ = backend.Close()
		return
	}
	defer m.untrack(backend)
	cr := bufio.NewReader(client)
	br := bufio.NewReader(backend)
	for {
		req, err := readWireMessage(cr)
		if err != nil {
			return
		}
		cmd := commandName(req)
		m.begin(cmd)
		scan := scanOf(cmd, req)
		key := collectionKey(cmd, req)
		read := readOnly(cmd, req)
		if m.parallelReads.Load() && read {
			t0 := time.Now()
			err = roundTrip(req, backend, br, client, func() {})
			m.count(cmd, key, scan, true, 0, time.Since(t0))
		} else {
			t0 := time.Now()
			arrived := m.lastSeq()
			unlock := m.mu.Unlock
			if read && m.ids.known(req) {
				// A read of a collection whose _id index is made: nothing of it writes.
				unlock = m.mu.LockRead()
			} else {
				m.mu.Lock()
			}
			t1 := time.Now()
			seq := m.acquired()
			if read {
				m.waitedBehind(arrived, seq, t0, t1)
			}
			m.running(cmd, t1)
			err = m.pointRoundTrip(req, backend, br, client)
			m.running("", time.Time{})
			m.released(seq, key, t1, time.Now())
			unlock()
			m.count(cmd, key, scan, false, t1.Sub(t0), time.Since(t1))
		}
		if err != nil {
			return
		}
	}
}

// pointRoundTrip forwards one request and all its replies, running a point command (see
// planPoint) as a probe and a narrowed command. The caller holds the lock.
func (m *Mongo) pointRoundTrip(req []byte, backend io.Writer, br *bufio.Reader, client io.Writer) error {
	if p := planPoint(req); p != nil {
		matched, err := probe(p, backend, br)
		if err == nil {
			m.points.Add(1)
		}
		switch {
		case errors.Is(err, errProbe):
		case err != nil:
			return err
		case !matched:
			reply, err := noMatchReply(req, p.noMatch)
			if err != nil {
				return err
			}
			_, err = client.Write(reply)
			return err
		default:
			req = p.narrowed
		}
	}
	return roundTrip(req, backend, br, client, func() { m.ids.after(req) })
}

// roundTrip forwards one request and all its replies. A request flagged moreToCome gets no
// reply; a reply flagged moreToCome is followed by more replies to the same request.
//
// FerretDB v1 breaks the first rule: it answers every request, moreToCome or not (an
// unacknowledged w:0 write, for one). The proxy reads that answer and drops it, so the client,
// which expects nothing, stays in step, and the write has finished before the lock is released.
//
// answered is called once FerretDB has answered (or, for a moreToCome request, finished), before
// anything goes back to the client.
func roundTrip(req []byte, backend io.Writer, br *bufio.Reader, client io.Writer, answered func()) error {
	if _, err := backend.Write(req); err != nil {
		return err
	}
	if moreToCome(req) {
		_, err := readWireMessage(br)
		if err == nil {
			answered()
		}
		return err
	}
	for first := true; ; first = false {
		reply, err := readWireMessage(br)
		if err != nil {
			return err
		}
		if first {
			answered()
		}
		if _, err := client.Write(reply); err != nil {
			return err
		}
		if !moreToCome(reply) {
			return nil
		}
	}
}

// commandName returns the name of an OP_MSG's command (the first key of its body) or of an
// OP_QUERY's (the first key of its query: the driver's handshake on a new connection is an
// OP_QUERY isMaster), "" for anything else.
func commandName(msg []byte) string {
	if len(msg) > wireHeaderLen+4 && binary.LittleEndian.Uint32(msg[12:16]) == opQuery {
		// header, flags, full collection name (cstring), skip, return, query document
		rest := msg[wireHeaderLen+4:]
		i := bytes.IndexByte(rest, 0)
		if i < 0 || len(rest) <= i+1+8+4+1 {
			return ""
		}
		name := rest[i+1+8+4+1:]
		if j := bytes.IndexByte(name, 0); j > 0 {
			return string(name[:j])
		}
		return ""
	}
	// header, flags, section kind 0, document length, element type
	const first = wireHeaderLen + 4 + 1 + 4 + 1
	if len(msg) <= first || binary.LittleEndian.Uint32(msg[12:16]) != opMsg || msg[wireHeaderLen+4] != sectionBody {
		return ""
	}
	name := msg[first:]
	if i := bytes.IndexByte(name, 0); i > 0 {
		return string(name[:i])
	}
	return ""
}

// readOnly reports whether a request, whose command is cmd, changes nothing on the server.
func readOnly(cmd string, req []byte) bool {
	switch cmd {
	case "find", "getMore", "count", "distinct", "listCollections", "listIndexes", "listDatabases",
		"hello", "isMaster", "ismaster", "ping", "buildInfo", "buildinfo", "getParameter", "serverStatus":
		return !moreToCome(req)
	case "aggregate":
		return !moreToCome(req) && !bytes.Contains(req, []byte("$out")) && !bytes.Contains(req, []byte("$merge"))
	}
	return false
}

// readWireMessage reads one whole wire message (header included).
func readWireMessage(r *bufio.Reader) ([]byte, error) {
	var hdr [wireHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int32(binary.LittleEndian.Uint32(hdr[0:4]))
	if n < wireHeaderLen || n > maxWireMessage {
		return nil, fmt.Errorf("wire message length %d out of range", n)
	}
	msg := make([]byte, n)
	copy(msg, hdr[:])
	if _, err := io.ReadFull(r, msg[wireHeaderLen:]); err != nil {
		return nil, err
	}
	return msg, nil
}

// moreToCome reports whether msg is an OP_MSG with the moreToCome flag bit set.
func moreToCome(msg []byte) bool {
	if len(msg) < wireHeaderLen+4 || binary.LittleEndian.Uint32(msg[12:16]) != opMsg {
		return false
	}
	return binary.LittleEndian.Uint32(msg[16:20])&msgMoreToCome != 0
}
