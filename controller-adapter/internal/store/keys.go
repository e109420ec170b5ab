package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Tenant keys at rest: the auth_keys.secret column holds "sha256$<salt>$<digest>", the SHA-256 of a
// per-key random salt followed by the key. The keys the platform makes are 64 random characters
// (over 380 bits), so a slow KDF would buy nothing against guessing them and would cost every
// request (Basic auth is checked on each one); the salt keeps equal keys from having equal hashes
// and precomputed tables useless. A reader of the store or its WAL learns no key.
const hashPrefix = "sha256$"

// dummyHash is compared against when the uuid is unknown, so that case costs the same.
var dummyHash = hashKey("")

func hashKey(key string) string {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		panic("store: crypto/rand failed: " + err.Error())
	}
	return hashWithSalt(salt, key)
}

func hashWithSalt(salt []byte, key string) string {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(key))
	enc := base64.RawStdEncoding
	return hashPrefix + enc.EncodeToString(salt) + "$" + enc.EncodeToString(h.Sum(nil))
}

// keyMatches compares key with a stored hash in constant time (for a given stored value).
func keyMatches(stored, key string) bool {
	rest, ok := strings.CutPrefix(stored, hashPrefix)
	saltStr, _, ok2 := strings.Cut(rest, "$")
	salt, err := base64.RawStdEncoding.DecodeString(saltStr)
	if !ok || !ok2 || err != nil {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(hashWithSalt(salt, key)), []byte(stored)) == 1
}

// hashPlaintextKeys upgrades a store written by a release that kept keys in plaintext: every
// secret not in the hashed form is replaced by its hash. Then the WAL is checkpointed and
// truncated so that the old values survive neither there nor in the main file's pages (the
// connection runs with secure_delete, so freed space is zeroed). It returns how many keys it
// upgraded.
func (s *Store) hashPlaintextKeys(ctx context.Context) (int, error) {
	n := 0
	err := s.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT uuid, secret FROM auth_keys WHERE secret NOT LIKE 'sha256$%'`)
		if err != nil {
			return err
		}
		plain := map[string]string{}
		for rows.Next() {
			var uuid, secret string
			if err := rows.Scan(&uuid, &secret); err != nil {
				return errors.Join(err, rows.Close())
			}
			plain[uuid] = secret
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
		for uuid, secret := range plain {
			if _, err := tx.ExecContext(ctx, `UPDATE auth_keys SET secret = ? WHERE uuid = ?`, hashKey(secret), uuid); err != nil {
				return err
			}
		}
		n = len(plain)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("hash plaintext keys: %w", err)
	}
	if n > 0 {
		if _, err := s.w.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			return n, fmt.Errorf("hash plaintext keys: checkpoint: %w", err)
		}
	}
	return n, nil
}

// keyAlphabet is what OpenWhisk's generated secrets are made of.
const keyAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// NewCredentials makes a fresh uuid (version 4, with dashes) and a 64-character key, the shape
// of OpenWhisk's "uuid:key" API keys.
func NewCredentials() (uuid, key string) {
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		panic("store: crypto/rand failed: " + err.Error())
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	uuid = fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	k := make([]byte, 64)
	// rand.Text would be shorter to write but uses another alphabet; rejection sampling keeps
	// the distribution uniform over keyAlphabet.
	buf := make([]byte, 1)
	for i := 0; i < len(k); {
		if _, err := rand.Read(buf); err != nil {
			panic("store: crypto/rand failed: " + err.Error())
		}
		if int(buf[0]) >= 256-256%len(keyAlphabet) {
			continue
		}
		k[i] = keyAlphabet[int(buf[0])%len(keyAlphabet)]
		i++
	}
	return uuid, string(k)
}
