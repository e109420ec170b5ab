package app

import (
	"strings"
	"testing"
)

func TestChooseBackends(t *testing.T) {
	all := BuiltBackends
	today := Built{Sandboxes: []string{"process"}, Enclaves: []string{"direct"}}
	bare := Machine{}
	rich := Machine{Docker: true, OCIRuntime: true, SGX: true, Images: true, Root: true}
	tests := []struct {
		name                    string
		sandbox, enclave, model string
		machine                 Machine
		built                   Built
		want                    [3]string
		wantErr                 string
	}{
		{name: "process and direct only", machine: rich, built: today, want: [3]string{"process", "direct", "teemate"}},
		{name: "auto on a bare machine", sandbox: "auto", enclave: "auto", machine: bare, built: all, want: [3]string{"process", "direct", "teemate"}},
		{name: "oci preferred: same isolation, pooled starts", machine: rich, built: all, want: [3]string{"oci", "sgx", "teemate"}},
		{name: "docker when runc is missing", machine: Machine{Docker: true, Images: true, Root: true}, built: all, want: [3]string{"docker", "direct", "teemate"}},
		{name: "oci needs root", machine: Machine{OCIRuntime: true, Images: true}, built: all, want: [3]string{"process", "direct", "teemate"}},
		{name: "containers need the images", machine: Machine{Docker: true, OCIRuntime: true, Root: true}, built: all, want: [3]string{"process", "direct", "teemate"}},
		{name: "oci not built: docker", machine: rich, built: Built{Sandboxes: []string{"docker", "process"}, Enclaves: []string{"direct"}},
			want: [3]string{"docker", "direct", "teemate"}},
		{name: "explicit process on a rich machine", sandbox: "process", machine: rich, built: all, want: [3]string{"process", "sgx", "teemate"}},
		{name: "explicit none", sandbox: "none", enclave: "none", model: "native", machine: bare, built: today,
			want: [3]string{"none", "none", "native"}},
		{name: "explicit docker not built", sandbox: "docker", machine: rich, built: today, wantErr: "not built"},
		{name: "explicit docker not on the machine", sandbox: "docker", machine: bare, built: all, wantErr: "not available"},
		{name: "explicit sgx without hardware", enclave: "sgx", machine: Machine{Docker: true}, built: all, wantErr: "not available"},
		{name: "unknown sandbox", sandbox: "kvm", machine: rich, built: all, wantErr: "not one of"},
		{name: "unknown model", model: "fast", machine: rich, built: all, wantErr: "model"},
		{name: "nothing built", machine: rich, built: Built{}, wantErr: "no sandbox backend"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb, en, model, err := ChooseBackends(tt.sandbox, tt.enclave, tt.model, tt.machine, tt.built)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ChooseBackends: %v", err)
			}
			if got := [3]string{sb, en, model}; got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}
