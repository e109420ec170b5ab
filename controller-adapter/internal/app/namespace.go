package app

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"

	"github.com/teemate/platform/controller-adapter/internal/store"
	"github.com/teemate/platform/invoker/credentials"
	"github.com/teemate/platform/invoker/whisk"
)

// keyAlphabet is what OpenWhisk's generated secrets are made of.
const keyAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// NewCredentials makes a fresh uuid (version 4, with dashes) and a 64-character key, the shape
// of OpenWhisk's "uuid:key" API keys.
func NewCredentials() (uuid, key string) {
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		panic("app: crypto/rand failed: " + err.Error())
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
			panic("app: crypto/rand failed: " + err.Error())
		}
		if int(buf[0]) >= 256-256%len(keyAlphabet) {
			continue
		}
		k[i] = keyAlphabet[int(buf[0])%len(keyAlphabet)]
		i++
	}
	return uuid, string(k)
}

// AddNamespace adds a new key to namespace name in the store under dataDir, creating the
// namespace if needed, and returns the key as "uuid:key". This is the only time the key is
// shown: the store keeps a salted hash of it.
func AddNamespace(ctx context.Context, dataDir, name string) (string, error) {
	if !whisk.ValidEntityName(name) {
		return "", fmt.Errorf("namespace %q is not a valid entity name", name)
	}
	// Checked here too: this may be the first command run on a new host.
	if _, err := credentials.PrivateDir(dataDir, dataDirOwn...); err != nil {
		return "", fmt.Errorf("data directory: %w", err)
	}
	st, err := store.Open(filepath.Join(dataDir, "controller.db"))
	if err != nil {
		return "", fmt.Errorf("open store: %w", err)
	}
	defer st.Close() //nolint:errcheck // read-mostly use; the write below already committed or failed
	uuid, key := NewCredentials()
	if err := st.EnsureNamespace(ctx, name, uuid, key); err != nil {
		return "", fmt.Errorf("add namespace %s: %w", name, err)
	}
	return uuid + ":" + key, nil
}

// ListNamespaces lists every namespace in the store under dataDir.
func ListNamespaces(ctx context.Context, dataDir string) ([]string, error) {
	st, err := store.Open(filepath.Join(dataDir, "controller.db"))
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	defer st.Close() //nolint:errcheck // read-only use
	names, err := st.AllNamespaces(ctx)
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	return names, nil
}
