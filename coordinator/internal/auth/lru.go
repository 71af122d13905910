package auth

import (
	"container/list"
	"sync"
	"time"
)

// lru is a size-bounded, least-recently-used cache whose entries also expire.
type lru[K comparable, V any] struct {
	mu    sync.Mutex
	max   int
	order *list.List // front = most recently used; values are *entry[K, V]
	items map[K]*list.Element
}

type entry[K comparable, V any] struct {
	key     K
	val     V
	expires time.Time
}

func newLRU[K comparable, V any](max int) *lru[K, V] {
	return &lru[K, V]{max: max, order: list.New(), items: map[K]*list.Element{}}
}

// get returns the live value for k and when it expires; an expired entry is dropped.
func (c *lru[K, V]) get(k K, now time.Time) (V, time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var zero V
	el, ok := c.items[k]
	if !ok {
		return zero, time.Time{}, false
	}
	e := el.Value.(*entry[K, V])
	if !now.Before(e.expires) {
		c.order.Remove(el)
		delete(c.items, k)
		return zero, time.Time{}, false
	}
	c.order.MoveToFront(el)
	return e.val, e.expires, true
}

// put stores v under k until expires, evicting the least recently used entry when full.
func (c *lru[K, V]) put(k K, v V, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		e := el.Value.(*entry[K, V])
		e.val, e.expires = v, expires
		c.order.MoveToFront(el)
		return
	}
	c.items[k] = c.order.PushFront(&entry[K, V]{key: k, val: v, expires: expires})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(*entry[K, V]).key)
	}
}

// len returns the number of entries, expired ones included.
func (c *lru[K, V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
