package ofsync

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"antrea.io/libOpenflow/common"
	"antrea.io/libOpenflow/openflow15"
	"antrea.io/ofnet/ofctrl"
)

// flowConn sends flow-mod bundles on a connection of its own to the bridge's
// management socket, as ovs-ofctl does: bundles are per connection in OVS and flows
// are not, so the flows it installs are the bridge's like any other. ofnet's
// per-message path (a channel hand-off, a timer and a write per message, its replies
// parsed by 25 goroutines in no order) costs more than OVS spends on the flows, and
// cannot say which message of a bundle failed. Here the messages of a bundle are
// encoded into one reused buffer and written in large chunks, and the replies are
// read by one goroutine in the order OVS sent them: every error of a bundle-add
// arrives before the reply to the close request that follows it.
//
// ofnet's connection stays the one that tells connected from not (and triggers the
// replay); this one is dialled on first use and again after any failure.
type flowConn struct {
	sock string

	mu   sync.Mutex // one bundle at a time
	conn *ofConn
	xid  uint32
	bid  uint32
	buf  []byte
}

// writeChunk is how much encoded data is written at once.
const writeChunk = 256 << 10

// replyTimeout bounds the wait for one bundle reply; OVS answers a close request
// for 100k flows in well under a second.
const replyTimeout = 60 * time.Second

// ofConn is one connection and its reader.
type ofConn struct {
	c   net.Conn
	wmu sync.Mutex // the reader writes echo replies

	mu     sync.Mutex
	errs   map[uint32]error // errors by the xid of the failing message
	waitOn uint32           // the control message being waited for
	reply  chan uint32      // xid of a control reply (or error) received
	dead   chan struct{}
	err    error
}

func (fc *flowConn) nextXid() uint32 { fc.xid++; return fc.xid }

// dial connects and negotiates OpenFlow 1.5.
func (fc *flowConn) dial() (*ofConn, error) {
	c, err := net.DialTimeout("unix", fc.sock, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("flow connection: %w", err)
	}
	hello, _ := common.NewHello(openflow15.VERSION)
	data, _ := hello.MarshalBinary()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(data); err != nil {
		c.Close()
		return nil, fmt.Errorf("flow connection hello: %w", err)
	}
	typ, _, msg, err := readMsg(c)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("flow connection hello: %w", err)
	}
	if typ != openflow15.Type_Hello || msg[0] < openflow15.VERSION {
		c.Close()
		return nil, fmt.Errorf("flow connection: switch answered hello with type %d version %d, want OpenFlow 1.5", typ, msg[0])
	}
	_ = c.SetDeadline(time.Time{})
	oc := &ofConn{c: c, errs: map[uint32]error{}, reply: make(chan uint32, 8), dead: make(chan struct{})}
	go oc.read()
	return oc, nil
}

// readMsg reads one message and returns its type, xid and whole bytes.
func readMsg(r io.Reader) (uint8, uint32, []byte, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, 0, nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[2:4]))
	if n < 8 {
		return 0, 0, nil, fmt.Errorf("message length %d", n)
	}
	msg := make([]byte, n)
	copy(msg, hdr[:])
	if _, err := io.ReadFull(r, msg[8:]); err != nil {
		return 0, 0, nil, err
	}
	return hdr[1], binary.BigEndian.Uint32(hdr[4:8]), msg, nil
}

func (oc *ofConn) read() {
	for {
		typ, xid, msg, err := readMsg(oc.c)
		if err != nil {
			oc.close(fmt.Errorf("flow connection: %w", err))
			return
		}
		switch typ {
		case openflow15.Type_EchoRequest:
			msg[1] = openflow15.Type_EchoReply
			if err := oc.write(msg); err != nil {
				oc.close(err)
				return
			}
		case openflow15.Type_Error:
			oc.mu.Lock()
			oc.errs[xid] = decodeError(msg)
			w := oc.waitOn == xid
			oc.mu.Unlock()
			if w {
				oc.reply <- xid
			}
		case openflow15.Type_BundleControl:
			oc.reply <- xid
		}
	}
}

// decodeError names an OpenFlow error message's type and code.
func decodeError(msg []byte) error {
	if len(msg) < 12 {
		return errors.New("short OpenFlow error message")
	}
	typ, code := binary.BigEndian.Uint16(msg[8:10]), binary.BigEndian.Uint16(msg[10:12])
	var vendor uint32
	if typ == openflow15.ET_BUNDLE_FAILED && code <= openflow15.BEC_BUNDLE_IN_PROCESS-openflow15.BEC_UNKNOWN {
		// OpenFlow 1.5's own bundle codes, numbered as the ONF extension's from 0.
		return openflow15.ParseBundleError(code + openflow15.BEC_UNKNOWN)
	}
	if typ == openflow15.ET_EXPERIMENTER && len(msg) >= 16 {
		vendor = binary.BigEndian.Uint32(msg[12:16])
		if code >= openflow15.BEC_UNKNOWN && code <= openflow15.BEC_BUNDLE_IN_PROCESS {
			return openflow15.ParseBundleError(code)
		}
	}
	return errors.New(ofctrl.GetErrorMessage(typ, code, vendor))
}

func (oc *ofConn) write(b []byte) error {
	oc.wmu.Lock()
	defer oc.wmu.Unlock()
	_ = oc.c.SetWriteDeadline(time.Now().Add(replyTimeout))
	if _, err := oc.c.Write(b); err != nil {
		return fmt.Errorf("flow connection write: %w", err)
	}
	return nil
}

func (oc *ofConn) close(err error) {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	if oc.err == nil {
		oc.err = err
		oc.c.Close()
		close(oc.dead)
	}
}

// expect sets the control xid whose error, if any, must wake wait.
func (oc *ofConn) expect(xid uint32) {
	oc.mu.Lock()
	oc.waitOn = xid
	_, failed := oc.errs[xid]
	oc.mu.Unlock()
	if failed {
		// The error came before expect: wake wait ourselves.
		select {
		case oc.reply <- xid:
		default:
		}
	}
}

// wait returns once the reply to control message xid came; replies to earlier
// control messages are skipped.
func (oc *ofConn) wait(xid uint32) error {
	timer := time.NewTimer(replyTimeout)
	defer timer.Stop()
	for {
		select {
		case got := <-oc.reply:
			if got == xid {
				return nil
			}
		case <-oc.dead:
			return oc.err
		case <-timer.C:
			oc.close(errors.New("flow connection: no bundle reply"))
			return fmt.Errorf("bundle reply: timed out after %s", replyTimeout)
		}
	}
}

// takeErrs returns and clears the errors received so far.
func (oc *ofConn) takeErrs() map[uint32]error {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	e := oc.errs
	oc.errs = map[uint32]error{}
	return e
}

// closeConn drops the connection (the next bundle dials again).
func (fc *flowConn) closeConn() {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.conn != nil {
		fc.conn.close(errors.New("closed"))
		fc.conn = nil
	}
}

// errConn marks an error of the connection, not of the bundle: it is worth one retry
// on a new connection (nothing was committed, or the commit's adds repeat harmlessly).
type errConn struct{ err error }

func (e errConn) Error() string { return e.err.Error() }
func (e errConn) Unwrap() error { return e.err }

// bundle sends n messages, mod(0) to mod(n-1), as one atomic bundle and returns
// once it committed. mod is called as the bundle is written (again for a retry on a
// new connection), and name(i) names mod(i) in errors. A failed message discards the
// bundle and is reported by name, with the switch's reason.
func (fc *flowConn) bundle(n int, mod func(int) (*openflow15.FlowMod, error), name func(int) string) error {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	err := fc.bundleLocked(n, mod, name)
	var ce errConn
	if errors.As(err, &ce) {
		err = fc.bundleLocked(n, mod, name)
	}
	return err
}

func (fc *flowConn) bundleLocked(n int, mod func(int) (*openflow15.FlowMod, error), name func(int) string) error {
	if fc.conn != nil {
		select {
		case <-fc.conn.dead:
			fc.conn = nil
		default:
		}
	}
	if fc.conn == nil {
		oc, err := fc.dial()
		if err != nil {
			return err
		}
		fc.conn = oc
	}
	oc := fc.conn
	fail := func(err error) error {
		oc.close(err)
		fc.conn = nil
		return errConn{err}
	}
	oc.takeErrs()
	fc.bid++
	bid := fc.bid
	first := fc.xid + 1
	buf := fc.buf[:0]
	buf = appendBundleCtrl(buf, fc.nextXid(), bid, openflow15.OFPBCT_OPEN_REQUEST)
	enc := &encoder{n: n, firstXid: fc.xid + 1, bid: bid, mod: mod}
	fc.xid += uint32(n)
	for c := range enc.chunks() {
		if c.err != nil {
			// Part of the bundle may be written: a new connection drops it.
			oc.close(c.err)
			fc.conn = nil
			return fmt.Errorf("flow %s: %w", name(c.at), c.err)
		}
		if buf = append(buf, c.buf...); len(buf) >= writeChunk {
			if err := oc.write(buf); err != nil {
				return fail(err) // leaving the loop stops the encoder's goroutines
			}
			buf = buf[:0]
		}
	}
	closeXid := fc.nextXid()
	oc.expect(closeXid)
	buf = appendBundleCtrl(buf, closeXid, bid, openflow15.OFPBCT_CLOSE_REQUEST)
	if err := oc.write(buf); err != nil {
		return fail(err)
	}
	fc.buf = buf[:0]
	if err := oc.wait(closeXid); err != nil {
		return fail(err)
	}
	errs := oc.takeErrs()
	if len(errs) == 0 {
		commitXid := fc.nextXid()
		oc.expect(commitXid)
		if err := oc.write(appendBundleCtrl(nil, commitXid, bid, openflow15.OFPBCT_COMMIT_REQUEST)); err != nil {
			return fail(err)
		}
		if err := oc.wait(commitXid); err != nil {
			return fail(err)
		}
		errs = oc.takeErrs()
		if len(errs) == 0 {
			return nil
		}
	} else {
		// Adds that failed are not in the bundle: committing would install the rest.
		discardXid := fc.nextXid()
		oc.expect(discardXid)
		if err := oc.write(appendBundleCtrl(nil, discardXid, bid, openflow15.OFPBCT_DISCARD_REQUEST)); err != nil {
			return fail(err)
		}
		if err := oc.wait(discardXid); err != nil {
			return fail(err)
		}
		oc.takeErrs()
	}
	return bundleErrors(errs, first, n, name)
}

// bundleErrors reports the failed messages of a bundle, in order, by name; xids
// first.. are the open request and then the mods.
func bundleErrors(errs map[uint32]error, first uint32, n int, name func(int) string) error {
	var out []error
	if err, ok := errs[first]; ok {
		out = append(out, fmt.Errorf("bundle open: %w", err))
	}
	refused := 0
	for i := range n {
		if err, ok := errs[first+1+uint32(i)]; ok {
			refused++
			if refused <= 10 {
				out = append(out, fmt.Errorf("flow %s: %w", name(i), err))
			}
		}
	}
	if refused > 10 {
		out = append(out, fmt.Errorf("and %d more flows", refused-10))
	}
	for xid, err := range errs {
		if xid < first || xid > first+uint32(n) {
			out = append(out, fmt.Errorf("bundle: %w", err))
		}
	}
	if refused > 0 {
		return fmt.Errorf("switch refused %d of %d flow mods: %w", refused, n, errors.Join(out...))
	}
	return errors.Join(out...)
}

func appendHeader(b []byte, typ uint8, length int, xid uint32) []byte {
	b = append(b, openflow15.VERSION, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(length))
	return binary.BigEndian.AppendUint32(b, xid)
}

// appendBundleCtrl encodes OFPT_BUNDLE_CONTROL with the atomic flag.
func appendBundleCtrl(b []byte, xid, bid uint32, typ uint16) []byte {
	b = appendHeader(b, openflow15.Type_BundleControl, 16, xid)
	b = binary.BigEndian.AppendUint32(b, bid)
	b = binary.BigEndian.AppendUint16(b, typ)
	return binary.BigEndian.AppendUint16(b, openflow15.OFPBCT_ATOMIC)
}

// appendBundleAdd encodes OFPT_BUNDLE_ADD_MESSAGE around an encoded message whose
// xid is already xid.
func appendBundleAdd(b []byte, xid, bid uint32, msg []byte) []byte {
	b = appendHeader(b, openflow15.Type_BundleAddMessage, 16+len(msg), xid)
	b = binary.BigEndian.AppendUint32(b, bid)
	b = append(b, 0, 0)
	b = binary.BigEndian.AppendUint16(b, openflow15.OFPBCT_ATOMIC)
	return append(b, msg...)
}

// encoder encodes a bundle's messages mod(0)..mod(n-1) as bundle-add messages with
// xids firstXid.., chunk by chunk. A large bundle (a restart's 31k flows) is encoded
// by two goroutines while the chunks done go out in order: building each FlowMod
// through ofnet is most of lanesd's CPU for such a bundle.
type encoder struct {
	n        int
	firstXid uint32
	bid      uint32
	mod      func(int) (*openflow15.FlowMod, error)
	done     chan struct{}
}

// encodeChunk is how many messages go in a chunk; bundles of up to encodeAlone
// messages (every store event's) are encoded on the caller's goroutine.
const (
	encodeChunk   = 1024
	encodeAlone   = 4 * encodeChunk
	encodeWorkers = 2
)

type encoded struct {
	buf []byte
	err error
	at  int // the message that failed
}

// chunks yields the encoded chunks in order, and an error chunk as the last.
func (e *encoder) chunks() func(yield func(encoded) bool) {
	return func(yield func(encoded) bool) {
		nc := (e.n + encodeChunk - 1) / encodeChunk
		if e.n <= encodeAlone {
			for c := range nc {
				if r := e.encode(c); !yield(r) || r.err != nil {
					return
				}
			}
			return
		}
		e.done = make(chan struct{})
		defer e.stop()
		slots := make([]chan encoded, nc)
		for c := range slots {
			slots[c] = make(chan encoded, 1)
		}
		var next atomic.Int64
		for range encodeWorkers {
			go func() {
				for {
					c := int(next.Add(1) - 1)
					if c >= nc {
						return
					}
					select {
					case <-e.done:
						return
					default:
					}
					slots[c] <- e.encode(c)
				}
			}()
		}
		for _, slot := range slots {
			if r := <-slot; !yield(r) || r.err != nil {
				return
			}
		}
	}
}

// stop lets the workers end early, once chunks returns.
func (e *encoder) stop() { close(e.done) }

// encode encodes chunk c.
func (e *encoder) encode(c int) encoded {
	lo, hi := c*encodeChunk, min((c+1)*encodeChunk, e.n)
	var buf []byte
	for i := lo; i < hi; i++ {
		m, err := e.mod(i)
		if err != nil {
			return encoded{err: err, at: i}
		}
		xid := e.firstXid + uint32(i)
		m.Xid = xid
		data, err := m.MarshalBinary()
		if err != nil {
			return encoded{err: fmt.Errorf("encode: %w", err), at: i}
		}
		buf = appendBundleAdd(buf, xid, e.bid, data)
	}
	return encoded{buf: buf}
}
