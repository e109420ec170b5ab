package credentials

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"
)

// Modes of the platform's private files and directories.
const (
	DirMode  os.FileMode = 0o700
	FileMode os.FileMode = 0o600
)

// Fixed is one path whose mode PrivateDir tightened.
type Fixed struct {
	Path     string
	Was, Now os.FileMode
}

// PrivateDir makes dir private whatever it was: it creates it with mode 0700, or takes group and
// other bits off it, off every regular file directly in it, and off everything below the
// subdirectories named in own (directories end up at most 0700, files at most 0600 plus the
// owner's execute bit). It returns what it had to change so the caller can warn: a directory
// made by someone else, or by an older release, may have been readable by every user of the host,
// with tenant data in it.
//
// Other subdirectories are left as they are: they belong to other components with rules of their
// own (the function images of `make images` live in the same .state and must stay readable to
// the users that containers run as; the in-process invoker checks its own state directory).
// Nobody else reaches them anyway once dir is 0700. Symbolic links are never followed.
func PrivateDir(dir string, own ...string) ([]Fixed, error) {
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return nil, fmt.Errorf("private directory %s: %w", dir, err)
	}
	walk := map[string]bool{}
	for _, s := range own {
		walk[filepath.Clean(s)] = true
	}
	var fixed []Fixed
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path != dir && errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking (a broker segment, a WAL)
			}
			return err
		}
		if d.IsDir() && path != dir && filepath.Dir(path) == filepath.Clean(dir) && !walk[d.Name()] {
			return filepath.SkipDir
		}
		if d.Type()&fs.ModeSymlink != 0 || !(d.IsDir() || d.Type().IsRegular()) {
			return nil // sockets and links: their own modes or their targets' matter
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		was := info.Mode().Perm()
		limit := FileMode | 0o100
		if d.IsDir() {
			limit = DirMode
		}
		if was&^limit == 0 {
			return nil
		}
		now := was & limit
		if err := os.Chmod(path, now); err != nil {
			return err
		}
		fixed = append(fixed, Fixed{Path: path, Was: was, Now: now})
		return nil
	})
	if err != nil {
		return fixed, fmt.Errorf("private directory %s: %w", dir, err)
	}
	return fixed, nil
}

// Secret returns the secret kept in the file at path, making the file with a new random value
// (32 bytes, hex) and mode 0600 when it does not exist. created tells the caller it is new (e.g. to
// say where it is). A file readable by group or others is refused: whoever could read it may
// already hold the secret, so the operator must replace it, not the program silently reuse it.
func Secret(path string) (value string, created bool, err error) {
	value, err = ReadSecret(path)
	if err == nil {
		return value, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", false, err
	}
	value = RandomHex(32)
	if err := WriteSecret(path, value); err != nil {
		return "", false, err
	}
	return value, true, nil
}

// ReadSecret reads the secret in the file at path (surrounding white space removed). The file must
// not be readable or writable by group or others, and must not be empty. A missing file is an
// error wrapping fs.ErrNotExist.
func ReadSecret(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("secret file: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("secret file: %w", err)
	}
	if info.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("secret file %s has mode %04o: group and others must have no access (chmod 600, and replace the secret if others may have read it)",
			path, info.Mode().Perm())
	}
	b := make([]byte, 64<<10)
	n, err := f.Read(b)
	if err != nil && n == 0 {
		return "", fmt.Errorf("secret file %s: %w", path, err)
	}
	v := strings.TrimSpace(string(b[:n]))
	if v == "" {
		return "", fmt.Errorf("secret file %s is empty", path)
	}
	return v, nil
}

// WriteSecret writes value to path with mode 0600, atomically (a reader sees the old file or the
// whole new one), creating the parent directory with mode 0700 if needed.
func WriteSecret(path, value string) error {
	if err := os.MkdirAll(filepath.Dir(path), DirMode); err != nil {
		return fmt.Errorf("secret file %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("secret file %s: %w", path, err)
	}
	// CreateTemp makes the file 0600 already; the chmod says so to a reader of this code.
	err = errors.Join(tmp.Chmod(FileMode), writeClose(tmp, value+"\n"))
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		// Best effort: the temporary file is ours and unused; the write's error is the one to report.
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("secret file %s: %w", path, err)
	}
	return nil
}

func writeClose(f *os.File, s string) error {
	_, err := f.WriteString(s)
	return errors.Join(err, f.Close())
}

// RandomHex returns n random bytes, hex-encoded.
func RandomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		// crypto/rand does not fail on supported platforms (it panics itself since Go 1.24).
		panic("credentials: crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b)
}

// WarnFixed says which paths of a private directory were open to others until now: what they
// hold (activation parameters, secrets) may have been read, which the operator should know.
func WarnFixed(log *zap.Logger, fixed []Fixed) {
	for _, f := range fixed {
		log.Warn("made a private path private: other users could access it until now",
			zap.String("path", f.Path), zap.String("was", fmt.Sprintf("%04o", f.Was)), zap.String("now", fmt.Sprintf("%04o", f.Now)))
	}
}
