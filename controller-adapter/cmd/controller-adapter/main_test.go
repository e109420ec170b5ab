package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teemate/platform/invoker/attest/attesttest"
)

func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		args    []string
		wantOut string
		wantErr string
	}{
		{name: "unknown flag", args: []string{"--no-such-flag"}, wantErr: "not defined"},
		{name: "stray argument", args: []string{"serve"}, wantErr: `unexpected argument "serve"`},
		{name: "bad log format", args: []string{"--log-format", "xml"}, wantErr: "--log-format"},
		{name: "not standalone and no kafka", args: []string{"--data-dir", dir, "--port", "0"}, wantErr: "--kafka is required"},
		{name: "evidence measurement without roots", args: []string{"--evidence-mrenclave", strings.Repeat("00", 32)}, wantErr: "need --evidence-roots"},
		{name: "evidence roots missing", args: []string{"--evidence-roots", dir + "/none.pem", "--evidence-mrenclave", strings.Repeat("00", 32)}, wantErr: "--evidence-roots"},
		{name: "namespace without a verb", args: []string{"namespace"}, wantErr: "expected `add NAME` or `list`"},
		{name: "namespace add without a name", args: []string{"namespace", "add"}, wantErr: "expected"},
		{name: "namespace add bad name", args: []string{"namespace", "--data-dir", dir, "add", "a/b"}, wantErr: "not a valid entity name"},
		{name: "namespace add", args: []string{"namespace", "--data-dir", dir, "add", "alice"}, wantOut: ":"},
		{name: "namespace list shows the added one", args: []string{"namespace", "--data-dir", dir, "list"}, wantOut: "alice"},
		{name: "namespace limits sets", args: []string{"namespace", "--data-dir", dir, "limits", "alice", "--invocations-per-minute", "600", "--concurrent=100", "--fires-per-minute", "0"},
			wantOut: `{"invocationsPerMinute":600,"concurrentInvocations":100,"firesPerMinute":0}`},
		{name: "namespace limits back to the system's", args: []string{"namespace", "--data-dir", dir, "limits", "alice", "--concurrent", "default"},
			wantOut: `{"invocationsPerMinute":600,"firesPerMinute":0}`},
		{name: "namespace limits prints", args: []string{"namespace", "--data-dir", dir, "limits", "alice"}, wantOut: `{"invocationsPerMinute":600,"firesPerMinute":0}`},
		{name: "namespace limits of a missing namespace", args: []string{"namespace", "--data-dir", dir, "limits", "bob"}, wantErr: "not found"},
		{name: "namespace limits bad count", args: []string{"namespace", "--data-dir", dir, "limits", "alice", "--concurrent", "-1"}, wantErr: "not a count"},
		{name: "namespace limits unknown flag", args: []string{"namespace", "--data-dir", dir, "limits", "alice", "--memory", "5"}, wantErr: "not defined"},
		{name: "system limits at least 1", args: []string{"--invocations-per-minute", "0"}, wantErr: "at least 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(tt.args, &out, &errOut)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) && !strings.Contains(errOut.String(), tt.wantErr) {
					t.Fatalf("err = %v (stderr %q), want one mentioning %q", err, errOut.String(), tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("run: %v (stderr %q)", err, errOut.String())
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Fatalf("stdout %q, want it to contain %q", out.String(), tt.wantOut)
			}
		})
	}
}

func TestEvidencePolicyFlags(t *testing.T) {
	ca, err := attesttest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	roots := filepath.Join(t.TempDir(), "roots.pem")
	if err := os.WriteFile(roots, ca.RootPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	mr := strings.Repeat("ab", 32)
	p, err := evidencePolicy(roots, mr, "")
	if err != nil || p == nil || len(p.MREnclave) != 1 || p.MREnclave[0][0] != 0xab || p.Roots == nil {
		t.Fatalf("policy %+v, %v", p, err)
	}
	if p, err := evidencePolicy("", "", ""); err != nil || p != nil {
		t.Fatalf("no flags: %+v, %v", p, err)
	}
	for name, args := range map[string][3]string{
		"roots without a measurement": {roots, "", ""},
		"bad measurement":             {roots, "xyz", ""},
		"bad signer":                  {roots, "", mr + ",1"},
		"roots not PEM":               {filepath.Join(t.TempDir(), "x"), mr, ""},
	} {
		if _, err := evidencePolicy(args[0], args[1], args[2]); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
