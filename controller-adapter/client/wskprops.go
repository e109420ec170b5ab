package client

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// WskProps reads APIHOST and AUTH from wsk's properties file: $WSK_CONFIG_FILE, else ~/.wskprops.
// A missing file gives empty values, as wsk treats it.
func WskProps() (apihost, auth string, err error) {
	p := os.Getenv("WSK_CONFIG_FILE")
	if p == "" {
		h, herr := os.UserHomeDir()
		if herr != nil {
			// No home directory: no properties file, which wsk treats as empty too.
			return "", "", nil
		}
		p = filepath.Join(h, ".wskprops")
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return "", "", nil
	}
	if err != nil {
		return "", "", fmt.Errorf("wsk properties: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "APIHOST":
			apihost = strings.TrimSpace(v)
		case "AUTH":
			auth = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return "", "", fmt.Errorf("wsk properties %s: %w", p, err)
	}
	return apihost, auth, nil
}
