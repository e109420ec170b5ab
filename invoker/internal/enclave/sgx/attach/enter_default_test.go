//go:build !(sgx && linux && amd64)

package attach

import (
	"errors"
	"testing"

	"github.com/teemate/platform/invoker/internal/enclave/sgx/teemate"
)

func TestEnterHardwareOnly(t *testing.T) {
	tcs := TCS{teemate.TCS{Addr: 0x3ff00000}}
	if _, err := Enter(tcs, []byte(`{"type":"ping"}`)); !errors.Is(err, ErrHardwareOnly) {
		t.Fatalf("err %v, want ErrHardwareOnly", err)
	}
}
