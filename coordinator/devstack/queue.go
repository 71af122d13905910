package devstack

import "sync"

// maxOvertakes is how many reads may go ahead of a waiting write: a steady stream of reads
// delays a write by at most that many, never starves it. The site's passes read up to 8 jobs
// at once, several passes at a time: with 8, one pass's reads used the allowance up and a
// status read that came next waited behind them and the write (4.0 ms a read on average after
// a c=8 burst with history, small bench run at load 2-5); reads run together, so 32 of them
// hold a write up for a few of their durations, not 32.
const maxOvertakes = 32

// queueLock is the proxy's lock: no command ever runs on FerretDB beside a write.
//
// First come, first served (readFirst off), it is held by one command at a time, read or
// write, handed to the waiting commands in the order they came: the proxy as it was first
// built. With readFirst on (the default), reads share it: a read runs beside other reads,
// never beside a write, and goes ahead of the writes waiting (at most maxOvertakes reads while
// a write waits); writes hold it alone, in the order they came. What it guarantees to a write
// (nothing else runs on FerretDB while it does, so a conditional update's query and write are
// one step) is the same in both modes; reads, which change nothing, only wait less.
//
// Reordering is safe for the clients: a client sends its next command on a connection only
// after the reply to the previous one, so no read can overtake a write whose reply its client
// already had (a write acknowledged before a read is sent has run before it), as on MongoDB,
// where the commands of different connections are not ordered either.
type queueLock struct {
	mu        sync.Mutex
	readFirst bool
	// excl: held by one command alone (a write, or any command first come, first served);
	// readers: held by that many reads together (readFirst only).
	excl    bool
	readers int
	waiting []waiter
	// overtakes counts the reads let in ahead of a waiting write since a write last had the
	// lock.
	overtakes int
}

type waiter struct {
	read bool
	// ready receives whether the lock was handed over shared (true) or alone.
	ready chan bool
}

// grant hands the lock to w.
func (w waiter) grant(shared bool) { w.ready <- shared }

// Lock takes the lock alone: for a write, or any command not known to be read-only.
func (l *queueLock) Lock() {
	l.mu.Lock()
	if !l.excl && l.readers == 0 && len(l.waiting) == 0 {
		l.excl, l.overtakes = true, 0
		l.mu.Unlock()
		return
	}
	l.wait(false)
}

// Unlock releases a Lock.
func (l *queueLock) Unlock() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.excl = false
	l.dispatch()
}

// LockRead takes the lock for a read-only command: shared with other reads with readFirst
// on, alone otherwise. It returns the function that releases it.
func (l *queueLock) LockRead() (unlock func()) {
	l.mu.Lock()
	if !l.readFirst {
		l.mu.Unlock()
		l.Lock()
		return l.Unlock
	}
	if !l.excl && l.admitRead() {
		l.readers++
		l.mu.Unlock()
		return l.unlockRead
	}
	if l.wait(true) {
		return l.unlockRead
	}
	return l.Unlock
}

func (l *queueLock) unlockRead() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.readers--
	l.dispatch()
}

// wait queues the caller, whose l.mu is held, and returns once it has been handed the lock;
// shared says it shares it with other reads.
func (l *queueLock) wait(read bool) (shared bool) {
	w := waiter{read: read, ready: make(chan bool, 1)}
	l.waiting = append(l.waiting, w)
	l.mu.Unlock()
	return <-w.ready
}

// admitRead reports whether a read may join the reads holding the lock now (the caller holds
// l.mu, the lock is not held alone): always while no write waits, else while fewer than
// maxOvertakes reads went ahead of it; it counts the overtake.
func (l *queueLock) admitRead() bool {
	if !l.writeWaiting() {
		return true
	}
	if l.overtakes < maxOvertakes {
		l.overtakes++
		return true
	}
	return false
}

func (l *queueLock) writeWaiting() bool {
	for _, w := range l.waiting {
		if !w.read {
			return true
		}
	}
	return false
}

// dispatch hands the free (or read-shared) lock to the waiting commands; the caller holds l.mu.
func (l *queueLock) dispatch() {
	if l.excl || len(l.waiting) == 0 {
		return
	}
	if l.readFirst {
		for i := 0; i < len(l.waiting); {
			w := l.waiting[i]
			if w.read && l.admitRead() {
				l.readers++
				l.waiting = append(l.waiting[:i], l.waiting[i+1:]...)
				w.grant(true)
				continue
			}
			i++
		}
		if l.readers > 0 || len(l.waiting) == 0 {
			return
		}
	} else if l.readers > 0 {
		return
	}
	// Nothing holds it: the first waiting write (read-first), or the first waiting command,
	// takes it alone.
	next := 0
	if l.readFirst {
		for i, w := range l.waiting {
			if !w.read {
				next = i
				break
			}
		}
	}
	w := l.waiting[next]
	l.waiting = append(l.waiting[:next], l.waiting[next+1:]...)
	l.excl, l.overtakes = true, 0
	w.grant(false)
}

// setReadFirst turns the read-first order on or off for the commands that come from now on.
func (l *queueLock) setReadFirst(on bool) {
	l.mu.Lock()
	l.readFirst = on
	l.mu.Unlock()
}
