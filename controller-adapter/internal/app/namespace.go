package app

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/teemate/platform/controller-adapter/internal/store"
	"github.com/teemate/platform/invoker/credentials"
	"github.com/teemate/platform/invoker/whisk"
)

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
	uuid, key := store.NewCredentials()
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

// SetNamespaceLimits changes namespace name's own limits in the store under dataDir and returns
// them. A running controller-adapter applies them from the namespace's next request.
func SetNamespaceLimits(ctx context.Context, dataDir, name string, change store.LimitsChange) (store.Limits, error) {
	st, err := store.Open(filepath.Join(dataDir, "controller.db"))
	if err != nil {
		return store.Limits{}, fmt.Errorf("open store: %w", err)
	}
	defer st.Close() //nolint:errcheck // the write below already committed or failed
	l, err := st.SetLimits(ctx, name, change)
	if err != nil {
		return store.Limits{}, fmt.Errorf("namespace %s: %w", name, err)
	}
	return l, nil
}
