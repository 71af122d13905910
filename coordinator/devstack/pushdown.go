package devstack

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Point commands: the proxy's stand-in for MongoDB's _id index.
//
// FerretDB v1's SQLite backend narrows a query to one row only when the filter is exactly
// {_id: <string or ObjectID>}; any other filter makes it read and decode every document of
// the collection and filter them in Go. The store's conditional writes name the document by
// _id and add their conditions ({_id, state: {$in: [...]}}), so each of them would cost a
// pass over the whole collection: with a site's history in it, every state change would slow
// down as jobs accumulate.
//
// For a findAndModify, or an update or delete of one statement, whose filter holds _id
// equal to a string or ObjectID beside other conditions (and that does not upsert), the proxy,
// holding its lock, first asks FerretDB whether that one document matches the whole filter
// (an aggregation whose first $match, {_id}, is pushed down to SQLite, and whose second is the
// original filter), then forwards the command with its filter narrowed to {_id}, or answers
// "nothing matched" itself, with FerretDB's own reply for that case. Nothing can change between
// the two under the lock, so the outcome is the command's own. Any other message, or one the
// proxy cannot parse, goes through unchanged.

// OP_MSG flag bits and section kinds.
const (
	msgChecksumPresent = 1 << 0
	sectionBody        = 0
	sectionSequence    = 1
)

// wireMsg is a parsed OP_MSG: its body and its document sequences.
type wireMsg struct {
	requestID int32
	flags     uint32
	body      bson.Raw
	seqs      []docSequence
}

type docSequence struct {
	id   string
	docs []bson.Raw
}

// parseOpMsg parses msg, a whole wire message; ok is false for anything but an OP_MSG
// without checksum that parses cleanly.
func parseOpMsg(msg []byte) (m wireMsg, ok bool) {
	if len(msg) < wireHeaderLen+5 || binary.LittleEndian.Uint32(msg[12:16]) != opMsg {
		return m, false
	}
	m.requestID = int32(binary.LittleEndian.Uint32(msg[4:8]))
	m.flags = binary.LittleEndian.Uint32(msg[16:20])
	if m.flags&(msgChecksumPresent|msgMoreToCome) != 0 {
		return m, false
	}
	rest := msg[20:]
	for len(rest) > 0 {
		kind := rest[0]
		rest = rest[1:]
		switch kind {
		case sectionBody:
			doc, tail, ok := readDoc(rest)
			if !ok || m.body != nil {
				return m, false
			}
			m.body, rest = doc, tail
		case sectionSequence:
			if len(rest) < 4 {
				return m, false
			}
			n := int(binary.LittleEndian.Uint32(rest[:4]))
			if n < 5 || n > len(rest) {
				return m, false
			}
			sec := rest[4:n]
			rest = rest[n:]
			end := 0
			for end < len(sec) && sec[end] != 0 {
				end++
			}
			if end == len(sec) {
				return m, false
			}
			s := docSequence{id: string(sec[:end])}
			for sec = sec[end+1:]; len(sec) > 0; {
				doc, tail, ok := readDoc(sec)
				if !ok {
					return m, false
				}
				s.docs, sec = append(s.docs, doc), tail
			}
			m.seqs = append(m.seqs, s)
		default:
			return m, false
		}
	}
	return m, m.body != nil
}

// readDoc splits one BSON document off the front of b.
func readDoc(b []byte) (bson.Raw, []byte, bool) {
	if len(b) < 5 {
		return nil, nil, false
	}
	n := int(binary.LittleEndian.Uint32(b[:4]))
	if n < 5 || n > len(b) {
		return nil, nil, false
	}
	doc := bson.Raw(b[:n])
	if doc.Validate() != nil {
		return nil, nil, false
	}
	return doc, b[n:], true
}

// encode renders m as a wire message with the given request ID and responseTo.
func (m wireMsg) encode(requestID, responseTo int32) []byte {
	b := make([]byte, wireHeaderLen, 256)
	binary.LittleEndian.PutUint32(b[4:8], uint32(requestID))
	binary.LittleEndian.PutUint32(b[8:12], uint32(responseTo))
	binary.LittleEndian.PutUint32(b[12:16], opMsg)
	b = binary.LittleEndian.AppendUint32(b, m.flags)
	b = append(b, sectionBody)
	b = append(b, m.body...)
	for _, s := range m.seqs {
		b = append(b, sectionSequence)
		n := 4 + len(s.id) + 1
		for _, d := range s.docs {
			n += len(d)
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(n))
		b = append(b, s.id...)
		b = append(b, 0)
		for _, d := range s.docs {
			b = append(b, d...)
		}
	}
	binary.LittleEndian.PutUint32(b[0:4], uint32(len(b)))
	return b
}

// pointPlan is a point command found in a request: the probe to run and the two outcomes.
type pointPlan struct {
	db, coll string
	id       any      // the _id value
	filter   bson.Raw // the whole original filter
	narrowed []byte   // the request with its filter narrowed to {_id}
	noMatch  bson.D   // FerretDB's reply when nothing matches
}

// planPoint returns the plan of a point command, or nil for any other request.
func planPoint(req []byte) *pointPlan {
	m, ok := parseOpMsg(req)
	if !ok {
		return nil
	}
	cmd, err := m.body.IndexErr(0)
	if err != nil {
		return nil
	}
	coll, ok := cmd.Value().StringValueOK()
	if !ok {
		return nil
	}
	db, ok := m.body.Lookup("$db").StringValueOK()
	if !ok {
		return nil
	}
	p := &pointPlan{db: db, coll: coll}
	switch cmd.Key() {
	case "findAndModify":
		if truthy(m.body.Lookup("upsert")) {
			return nil
		}
		filter, ok := m.body.Lookup("query").DocumentOK()
		if !ok || !p.pointFilter(filter) {
			return nil
		}
		body, err := replaceField(m.body, "query", bson.D{{Key: "_id", Value: p.id}})
		if err != nil {
			return nil
		}
		m.body = body
		p.noMatch = bson.D{
			{Key: "lastErrorObject", Value: bson.D{{Key: "n", Value: int32(0)}, {Key: "updatedExisting", Value: false}}},
			{Key: "value", Value: nil},
			{Key: "ok", Value: 1.0},
		}
	case "update", "delete":
		list, filterKey := "updates", "q"
		p.noMatch = bson.D{{Key: "n", Value: int32(0)}, {Key: "nModified", Value: int32(0)}, {Key: "ok", Value: 1.0}}
		if cmd.Key() == "delete" {
			list = "deletes"
			p.noMatch = bson.D{{Key: "n", Value: int32(0)}, {Key: "ok", Value: 1.0}}
		}
		stmt, set := oneStatement(&m, list)
		if stmt == nil {
			return nil
		}
		if cmd.Key() == "update" && (truthy(stmt.Lookup("upsert")) || truthy(stmt.Lookup("multi"))) {
			return nil
		}
		if cmd.Key() == "delete" {
			if l, ok := stmt.Lookup("limit").AsInt64OK(); !ok || l != 1 {
				return nil
			}
		}
		filter, ok := stmt.Lookup(filterKey).DocumentOK()
		if !ok || !p.pointFilter(filter) {
			return nil
		}
		narrowed, err := replaceField(stmt, filterKey, bson.D{{Key: "_id", Value: p.id}})
		if err != nil {
			return nil
		}
		if err := set(narrowed); err != nil {
			return nil
		}
	default:
		return nil
	}
	p.narrowed = m.encode(m.requestID, 0)
	return p
}

// pointFilter records filter and its _id when filter names one document by a string or
// ObjectID _id and has other conditions besides (a filter of _id alone is pushed down by
// FerretDB itself).
func (p *pointPlan) pointFilter(filter bson.Raw) bool {
	elems, err := filter.Elements()
	if err != nil || len(elems) < 2 {
		return false
	}
	v, err := filter.LookupErr("_id")
	if err != nil {
		return false
	}
	switch v.Type {
	case bson.TypeString:
		p.id = v.StringValue()
	case bson.TypeObjectID:
		p.id = v.ObjectID()
	default:
		return false
	}
	p.filter = filter
	return true
}

// oneStatement returns the single statement of an update or delete (in the body's array or
// in a document sequence) and a function that replaces it in m; nil if there is not exactly
// one.
func oneStatement(m *wireMsg, list string) (bson.Raw, func(bson.Raw) error) {
	for i, s := range m.seqs {
		if s.id == list {
			if len(s.docs) != 1 {
				return nil, nil
			}
			return s.docs[0], func(d bson.Raw) error { m.seqs[i].docs = []bson.Raw{d}; return nil }
		}
	}
	arr, ok := m.body.Lookup(list).ArrayOK()
	if !ok {
		return nil, nil
	}
	vals, err := arr.Values()
	if err != nil || len(vals) != 1 {
		return nil, nil
	}
	stmt, ok := vals[0].DocumentOK()
	if !ok {
		return nil, nil
	}
	return stmt, func(d bson.Raw) error {
		body, err := replaceField(m.body, list, bson.A{d})
		if err != nil {
			return err
		}
		m.body = body
		return nil
	}
}

// replaceField returns doc with the value of key replaced, keeping the order of its fields.
func replaceField(doc bson.Raw, key string, v any) (bson.Raw, error) {
	var d bson.D
	if err := bson.Unmarshal(doc, &d); err != nil {
		return nil, err
	}
	for i := range d {
		if d[i].Key == key {
			d[i].Value = v
			return bson.Marshal(d)
		}
	}
	return nil, fmt.Errorf("no field %q", key)
}

// truthy reports a boolean true or a non-zero number.
func truthy(v bson.RawValue) bool {
	if b, ok := v.BooleanOK(); ok {
		return b
	}
	if n, ok := v.AsInt64OK(); ok {
		return n != 0
	}
	return false
}

// probeIDs numbers the proxy's own requests (outside the range drivers use first).
var probeIDs atomic.Int32

func init() { probeIDs.Store(1 << 30) }

// errProbe means FerretDB could not evaluate the probe (a filter it refuses): the original
// command is forwarded as it is, and fails or succeeds on its own.
var errProbe = errors.New("probe refused")

// probe asks the backend whether the document p names matches p's whole filter.
func probe(p *pointPlan, backend io.Writer, br *bufio.Reader) (bool, error) {
	body, err := bson.Marshal(bson.D{
		{Key: "aggregate", Value: p.coll},
		{Key: "pipeline", Value: bson.A{
			bson.D{{Key: "$match", Value: bson.D{{Key: "_id", Value: p.id}}}},
			bson.D{{Key: "$match", Value: p.filter}},
			bson.D{{Key: "$project", Value: bson.D{{Key: "_id", Value: 1}}}},
		}},
		{Key: "cursor", Value: bson.D{}},
		{Key: "$db", Value: p.db},
	})
	if err != nil {
		return false, errProbe
	}
	id := probeIDs.Add(1)
	if _, err := backend.Write(wireMsg{body: body}.encode(id, 0)); err != nil {
		return false, err
	}
	reply, err := readWireMessage(br)
	if err != nil {
		return false, err
	}
	r, ok := parseOpMsg(reply)
	if !ok {
		return false, errProbe
	}
	if okv, _ := r.body.Lookup("ok").AsFloat64OK(); okv != 1 {
		return false, errProbe
	}
	batch, ok := r.body.Lookup("cursor", "firstBatch").ArrayOK()
	if !ok {
		return false, errProbe
	}
	vals, err := batch.Values()
	if err != nil {
		return false, errProbe
	}
	return len(vals) > 0, nil
}

// noMatchReply is the reply to request req when nothing matched.
func noMatchReply(req []byte, doc bson.D) ([]byte, error) {
	body, err := bson.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return wireMsg{body: body}.encode(probeIDs.Add(1), int32(binary.LittleEndian.Uint32(req[4:8]))), nil
}

// scanOf returns "<command> <collection>" for a read that FerretDB answers by decoding every
// document of the collection (a find, count or distinct whose filter is not exactly
// {_id: <string or ObjectID>}, an aggregate whose first stage is not such a $match, and the
// getMores that go on with a cursor: only such reads return more than one batch), "" for
// any other request.
func scanOf(cmd string, req []byte) string {
	var key string
	switch cmd {
	case "find":
		key = "filter"
	case "count", "distinct":
		key = "query"
	case "aggregate", "getMore":
	default:
		return ""
	}
	m, ok := parseOpMsg(req)
	if !ok {
		return ""
	}
	if cmd == "getMore" {
		if coll, ok := m.body.Lookup("collection").StringValueOK(); ok {
			return cmd + " " + coll
		}
		return ""
	}
	coll, ok := m.body.Lookup(cmd).StringValueOK()
	if !ok {
		return "" // a collection-less aggregate ({aggregate: 1}) or one the proxy cannot read
	}
	var filter bson.Raw
	if key != "" {
		filter, _ = m.body.Lookup(key).DocumentOK()
	} else if stages, ok := m.body.Lookup("pipeline").ArrayOK(); ok {
		if first, err := stages.IndexErr(0); err == nil {
			if st, ok := first.DocumentOK(); ok {
				filter, _ = st.Lookup("$match").DocumentOK()
			}
		}
	}
	if elems, err := filter.Elements(); err == nil && len(elems) == 1 && elems[0].Key() == "_id" {
		switch elems[0].Value().Type {
		case bson.TypeString, bson.TypeObjectID:
			return ""
		}
	}
	return cmd + " " + coll
}

// collectionKey is "<command> <collection>" for a command that names its collection (the
// value of its first field, or getMore's "collection"), else the command alone.
func collectionKey(cmd string, req []byte) string {
	const body = wireHeaderLen + 4 + 1
	if cmd == "" || len(req) <= body || binary.LittleEndian.Uint32(req[12:16]) != opMsg || req[wireHeaderLen+4] != sectionBody {
		return cmd
	}
	doc, _, ok := readDoc(req[body:])
	if !ok {
		return cmd
	}
	field := cmd
	if cmd == "getMore" {
		field = "collection"
	}
	if coll, ok := doc.Lookup(field).StringValueOK(); ok {
		return cmd + " " + coll
	}
	return cmd
}
