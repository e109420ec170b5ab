package store

import (
	"encoding/binary"
	"fmt"
	"sync"
)

// The invoke path reads the caller's key and the action on every request: two joins or document
// reads that cost 0.25-0.4 ms each in situ. readCache keeps what they read, stamped with the
// generation it was read at, and an entry serves only while the generation is unchanged.
//
// Every write of an entity or a subject bumps the generation in its own transaction (Store.tx),
// and once it committed writes the new value to a small file beside the database (the database
// path + generationSuffix), which a read checks with one pread: a query of the generation row
// costs as much in situ as the reads it would spare. So the check holds for every writer that
// goes through this package: the API, and the operator's `namespace` commands in another
// process, whose command returns after the file was written. A hand edit of the database with
// another SQLite client does not bump it; the cache then serves the old values until the next
// write through this package or a restart.
//
// Why an entry is never served stale: the file is written after the commit, so data read after
// the file showed a value includes every commit whose value was written before; a later
// commit writes its own value, different from every earlier one (the generation row orders
// them), and the stamps of all existing entries stop matching, whatever order two processes'
// file writes land in.
//
// What is kept is what the database holds (the key's salted hash, the action's document), never
// the caller's key; Authenticate still checks the key against the hash on every request.

// cacheMaxEntries bounds each map; a full map is emptied rather than evicted entry by entry (a
// working set that large is not what this cache is for). cacheMaxDoc bounds a cached action's
// document.
const (
	cacheMaxEntries = 4096
	cacheMaxDoc     = 256 << 10
)

type readCache struct {
	auth    stamped[authRow]   // by uuid
	actions stamped[actionRow] // by doc id
}

// authRow is Authenticate's row.
type authRow struct{ namespace, subject, hash, limit string }

// actionRow is GetAction's row.
type actionRow struct{ doc, rev string }

// stamped maps keys to rows stamped with the generation they were read at; a row serves only at
// that generation.
type stamped[T any] struct {
	mu sync.Mutex
	m  map[string]stampedRow[T]
}

type stampedRow[T any] struct {
	gen int64
	row T
}

// at returns key's row if it was read at gen.
func (c *stamped[T]) at(key string, gen int64) (T, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.m[key]
	return r.row, ok && r.gen == gen
}

// put keeps row, read at gen, for key.
func (c *stamped[T]) put(key string, gen int64, row T) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= cacheMaxEntries {
		c.m = map[string]stampedRow[T]{}
	}
	c.m[key] = stampedRow[T]{gen: gen, row: row}
}

// generationSuffix names the generation's file beside the database.
const generationSuffix = "-generation"

// generation reads the published generation. ok is false when it could not be read (a file not
// written yet, an I/O error): the caller then reads the database, as without a cache.
func (s *Store) generation() (n int64, ok bool) {
	var b [8]byte
	if k, err := s.gen.ReadAt(b[:], 0); k != len(b) || err != nil {
		return 0, false // only costs this request the cache
	}
	return int64(binary.LittleEndian.Uint64(b[:])), true
}

// publishGeneration writes a committed generation to the file readers check.
func (s *Store) publishGeneration(n int64) error {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(n))
	if _, err := s.gen.WriteAt(b[:], 0); err != nil {
		// The write itself committed; say that caches may not have seen it.
		return fmt.Errorf("the write committed, but its generation could not be published (restart the controller-adapter to be sure it is seen): %w", err)
	}
	return nil
}
