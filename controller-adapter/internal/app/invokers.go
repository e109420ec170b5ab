package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/teemate/platform/controller-adapter/internal/api"
	"github.com/teemate/platform/controller-adapter/internal/balancer"
	"github.com/teemate/platform/invoker/credentials"
)

// EnvAdminPassword overrides the admin password file (Config.AdminPasswordFile).
const EnvAdminPassword = "TEEMATE_ADMIN_PASSWORD"

// adminPasswordFile is file, or the default DATA-DIR/admin.password.
func adminPasswordFile(dataDir, file string) string {
	if file != "" {
		return file
	}
	return filepath.Join(dataDir, "admin.password")
}

// AdminPassword is the password of the controller's admin routes: EnvAdminPassword, else the file
// (default DATA-DIR/admin.password), which is created (0600, random) when create says so and it does
// not exist. created says it was.
func AdminPassword(dataDir, file string, create bool) (password string, created bool, err error) {
	if pw := os.Getenv(EnvAdminPassword); pw != "" {
		return pw, false, nil
	}
	path := adminPasswordFile(dataDir, file)
	if create {
		pw, created, err := credentials.Secret(path)
		if err != nil {
			return "", false, fmt.Errorf("admin password: %w", err)
		}
		return pw, created, nil
	}
	pw, err := credentials.ReadSecret(path)
	if err != nil {
		return "", false, fmt.Errorf("admin password (the controller-adapter's %s, or env %s): %w", path, EnvAdminPassword, err)
	}
	return pw, false, nil
}

// Admin reaches a running controller-adapter's admin routes (`controller-adapter invoker ...`).
type Admin struct {
	// APIHost is the controller's REST endpoint, e.g. http://127.0.0.1:3233.
	APIHost  string
	Password string
	// HTTP is the client (default: 30 s timeout).
	HTTP *http.Client
}

// DrainStatus is a drain's progress (balancer.DrainStatus, as the controller answers it).
type DrainStatus = balancer.DrainStatus

// Drain starts draining invoker id towards to (-1: the controller picks per image).
func (a Admin) Drain(ctx context.Context, id, to int, force bool) (DrainStatus, error) {
	body := map[string]any{"force": force}
	if to >= 0 {
		body["to"] = to
	}
	return a.call(ctx, http.MethodPost, fmt.Sprintf("/invokers/%d/drain", id), body)
}

// Undrain ends invoker id's drain.
func (a Admin) Undrain(ctx context.Context, id int) (DrainStatus, error) {
	return a.call(ctx, http.MethodPost, fmt.Sprintf("/invokers/%d/undrain", id), nil)
}

// Status is invoker id's drain progress.
func (a Admin) Status(ctx context.Context, id int) (DrainStatus, error) {
	return a.call(ctx, http.MethodGet, fmt.Sprintf("/invokers/%d/drain", id), nil)
}

// WaitDrained polls invoker id's drain every interval until it is drained (or no longer drains,
// an error: someone undrained it), calling progress with each status that differs from the last.
func (a Admin) WaitDrained(ctx context.Context, id int, interval time.Duration, progress func(DrainStatus)) (DrainStatus, error) {
	last := ""
	for {
		s, err := a.Status(ctx, id)
		if err != nil {
			return s, err
		}
		if key := statusKey(s); key != last && progress != nil {
			last = key
			progress(s)
		}
		switch s.State {
		case balancer.StateDrained:
			return s, nil
		case balancer.StateDraining:
		default:
			return s, fmt.Errorf("invoker%d is not draining any more (undrained meanwhile)", id)
		}
		select {
		case <-ctx.Done():
			return s, fmt.Errorf("invoker%d not drained yet (%s): %w", id, s.Waiting, ctx.Err())
		case <-time.After(interval):
		}
	}
}

// statusKey is what makes a status worth printing again.
func statusKey(s DrainStatus) string {
	b, err := json.Marshal(struct {
		State, Waiting string
		Moved          map[string]int
	}{s.State, s.Waiting, s.Moved})
	if err != nil {
		return s.State // a map of strings to ints always encodes
	}
	return string(b)
}

// call makes one admin call and decodes its DrainStatus; a refusal is an error with the
// controller's text.
func (a Admin) call(ctx context.Context, method, path string, in any) (DrainStatus, error) {
	var s DrainStatus
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return s, fmt.Errorf("encode: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(a.APIHost, "/")+path, body)
	if err != nil {
		return s, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.SetBasicAuth(api.AdminUser, a.Password)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := a.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return s, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return s, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return s, &AdminError{Status: resp.StatusCode, Text: e.Error}
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return s, nil
}

// AdminError is the controller's refusal of an admin call.
type AdminError struct {
	Status int
	Text   string
}

func (e *AdminError) Error() string {
	if e.Status == http.StatusUnauthorized {
		return fmt.Sprintf("the controller refused the admin password (HTTP 401): %s", e.Text)
	}
	return fmt.Sprintf("HTTP %d: %s", e.Status, e.Text)
}

// IsConflict says whether err is the controller's 409: the last invoker without force, or a
// destination that cannot take the images.
func IsConflict(err error) bool {
	var e *AdminError
	return errors.As(err, &e) && e.Status == http.StatusConflict
}
