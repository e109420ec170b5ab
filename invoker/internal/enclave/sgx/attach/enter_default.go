//go:build !(sgx && linux && amd64)

package attach

// Enter runs one gate request on t inside the enclave and returns the enclave's reply. This build has
// no EENTER: it checks its arguments and returns ErrHardwareOnly.
func Enter(t TCS, req []byte) ([]byte, error) {
	if err := checkRequest(t, req); err != nil {
		return nil, err
	}
	return nil, ErrHardwareOnly
}
