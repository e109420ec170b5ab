package attest

import (
	"encoding/binary"
	"fmt"
)

// The DCAP quote, version 3, as Intel's SGX ECDSA Quote Library reference lays it out (all
// integers little-endian):
//
//	offset  size  field
//	     0    48  header: version u16, attestation key type u16, TEE type u32, QE SVN u16,
//	              PCE SVN u16, QE vendor id [16], user data [20]
//	    48   384  ISV enclave report body (the enclave that asked for the quote)
//	   432     4  signature data length u32 (n)
//	   436     n  signature data:
//	                64  ECDSA signature (r||s) over bytes [0, 432) by the attestation key
//	                64  attestation key, a P-256 point (x||y)
//	               384  QE report body (the Quoting Enclave's own report)
//	                64  ECDSA signature (r||s) over the QE report body by the PCK key
//	               2+a  QE authentication data: size u16, then a bytes
//	             2+4+c  certification data: type u16, size u32, then c bytes
//	                    (type 5: the PCK certificate chain, PEM, leaf first)
const (
	quoteHeaderSize  = 48
	reportBodySize   = 384
	quoteSignedSize  = quoteHeaderSize + reportBodySize // what the attestation key signs
	quoteSigDataOff  = quoteSignedSize + 4
	ecdsaSigSize     = 64
	ecdsaPubSize     = 64
	quoteMinSigData  = ecdsaSigSize + ecdsaPubSize + reportBodySize + ecdsaSigSize + 2 + 2 + 4
	maxQuoteBytes    = 32 << 10 // a real quote with its PCK chain is about 4.5 KiB
	quoteVersion3    = 3
	attKeyECDSAP256  = 2
	certDataPCKChain = 5
)

// QuoteHeader is the quote's first 48 bytes.
type QuoteHeader struct {
	Version    uint16
	AttKeyType uint16
	TEEType    uint32
	QESVN      uint16
	PCESVN     uint16
	QEVendorID [16]byte
	UserData   [20]byte
}

// ReportBody is an SGX report body (384 bytes): the identity of an enclave and the 64 bytes of
// data it chose to bind (ReportData). Reserved bytes are not kept.
type ReportBody struct {
	CPUSVN       [16]byte
	MiscSelect   uint32
	ISVExtProdID [16]byte
	// Attributes: flags (u64) then XFRM (u64); flag bit 1 is DEBUG.
	Attributes  [16]byte
	MREnclave   [32]byte
	MRSigner    [32]byte
	ConfigID    [64]byte
	ISVProdID   uint16
	ISVSVN      uint16
	ConfigSVN   uint16
	ISVFamilyID [16]byte
	ReportData  [64]byte
}

// attrDebug is the DEBUG flag in the report's attributes: a debug enclave's memory is readable
// by the host, so it protects nothing.
const attrDebug = 1 << 1

// Debug reports whether the enclave runs in debug mode.
func (rb *ReportBody) Debug() bool {
	return binary.LittleEndian.Uint64(rb.Attributes[:8])&attrDebug != 0
}

// Quote is a parsed DCAP quote (version 3, ECDSA-256 with P-256).
type Quote struct {
	Header QuoteHeader
	Report ReportBody
	// Signature is r||s over the header and the report body, by AttestationKey.
	Signature [64]byte
	// AttestationKey is the QE's attestation key, a P-256 point x||y.
	AttestationKey [64]byte
	QEReport       ReportBody
	// QEReportSignature is r||s over the QE report body, by the PCK certificate's key.
	QEReportSignature [64]byte
	QEAuthData        []byte
	CertDataType      uint16
	CertData          []byte

	// signed, qeReportRaw are the bytes the two signatures cover, as they were in the quote.
	signed, qeReportRaw []byte
}

// reader walks a byte slice and records the first short read.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b)-r.off < n {
		r.err = fmt.Errorf("%w: quote truncated at offset %d (need %d more bytes, have %d)", ErrMalformed, r.off, n, len(r.b)-r.off)
		return nil
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s
}

func (r *reader) u16() uint16 {
	if s := r.take(2); s != nil {
		return binary.LittleEndian.Uint16(s)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if s := r.take(4); s != nil {
		return binary.LittleEndian.Uint32(s)
	}
	return 0
}

func (r *reader) into(dst []byte) {
	if s := r.take(len(dst)); s != nil {
		copy(dst, s)
	}
}

// ParseQuote parses a DCAP version 3 quote with an ECDSA P-256 attestation key. It checks the
// structure only: that every length fits, that nothing trails, and the version and key type. It
// verifies no signature.
func ParseQuote(b []byte) (*Quote, error) {
	if len(b) > maxQuoteBytes {
		return nil, fmt.Errorf("%w: quote of %d bytes, more than %d", ErrMalformed, len(b), maxQuoteBytes)
	}
	r := &reader{b: b}
	var q Quote
	h := &q.Header
	h.Version = r.u16()
	h.AttKeyType = r.u16()
	h.TEEType = r.u32()
	h.QESVN = r.u16()
	h.PCESVN = r.u16()
	r.into(h.QEVendorID[:])
	r.into(h.UserData[:])
	if r.err != nil {
		return nil, r.err
	}
	if h.Version != quoteVersion3 {
		return nil, fmt.Errorf("%w: quote version %d, want %d", ErrMalformed, h.Version, quoteVersion3)
	}
	if h.AttKeyType != attKeyECDSAP256 {
		return nil, fmt.Errorf("%w: attestation key type %d, want %d (ECDSA-256 with P-256)", ErrMalformed, h.AttKeyType, attKeyECDSAP256)
	}
	if h.TEEType != 0 {
		return nil, fmt.Errorf("%w: TEE type %#x, want 0 (SGX)", ErrMalformed, h.TEEType)
	}
	q.Report = parseReportBody(r.take(reportBodySize))
	sigLen := r.u32()
	if r.err != nil {
		return nil, r.err
	}
	if int64(sigLen) != int64(len(b)-quoteSigDataOff) {
		return nil, fmt.Errorf("%w: signature data length %d, but %d bytes follow it", ErrMalformed, sigLen, len(b)-quoteSigDataOff)
	}
	if sigLen < quoteMinSigData {
		return nil, fmt.Errorf("%w: signature data of %d bytes, less than the %d of its fixed fields", ErrMalformed, sigLen, quoteMinSigData)
	}
	q.signed = b[:quoteSignedSize]
	r.into(q.Signature[:])
	r.into(q.AttestationKey[:])
	q.qeReportRaw = r.take(reportBodySize)
	q.QEReport = parseReportBody(q.qeReportRaw)
	r.into(q.QEReportSignature[:])
	q.QEAuthData = r.take(int(r.u16()))
	q.CertDataType = r.u16()
	q.CertData = r.take(int(r.u32()))
	if r.err != nil {
		return nil, r.err
	}
	if r.off != len(b) {
		return nil, fmt.Errorf("%w: %d bytes after the certification data", ErrMalformed, len(b)-r.off)
	}
	return &q, nil
}

// parseReportBody reads a 384-byte report body; b is nil after a short read (the reader holds
// the error), which yields a zero body.
func parseReportBody(b []byte) ReportBody {
	var rb ReportBody
	if len(b) != reportBodySize {
		return rb
	}
	copy(rb.CPUSVN[:], b[0:16])
	rb.MiscSelect = binary.LittleEndian.Uint32(b[16:20])
	// 20..32 reserved
	copy(rb.ISVExtProdID[:], b[32:48])
	copy(rb.Attributes[:], b[48:64])
	copy(rb.MREnclave[:], b[64:96])
	// 96..128 reserved
	copy(rb.MRSigner[:], b[128:160])
	// 160..192 reserved
	copy(rb.ConfigID[:], b[192:256])
	rb.ISVProdID = binary.LittleEndian.Uint16(b[256:258])
	rb.ISVSVN = binary.LittleEndian.Uint16(b[258:260])
	rb.ConfigSVN = binary.LittleEndian.Uint16(b[260:262])
	// 262..304 reserved
	copy(rb.ISVFamilyID[:], b[304:320])
	copy(rb.ReportData[:], b[320:384])
	return rb
}

// Marshal encodes the report body in its 384-byte layout, reserved bytes zero.
func (rb *ReportBody) Marshal() []byte {
	b := make([]byte, reportBodySize)
	copy(b[0:16], rb.CPUSVN[:])
	binary.LittleEndian.PutUint32(b[16:20], rb.MiscSelect)
	copy(b[32:48], rb.ISVExtProdID[:])
	copy(b[48:64], rb.Attributes[:])
	copy(b[64:96], rb.MREnclave[:])
	copy(b[128:160], rb.MRSigner[:])
	copy(b[192:256], rb.ConfigID[:])
	binary.LittleEndian.PutUint16(b[256:258], rb.ISVProdID)
	binary.LittleEndian.PutUint16(b[258:260], rb.ISVSVN)
	binary.LittleEndian.PutUint16(b[260:262], rb.ConfigSVN)
	copy(b[304:320], rb.ISVFamilyID[:])
	copy(b[320:384], rb.ReportData[:])
	return b
}

// Marshal encodes the header in its 48-byte layout.
func (h *QuoteHeader) Marshal() []byte {
	b := make([]byte, quoteHeaderSize)
	binary.LittleEndian.PutUint16(b[0:2], h.Version)
	binary.LittleEndian.PutUint16(b[2:4], h.AttKeyType)
	binary.LittleEndian.PutUint32(b[4:8], h.TEEType)
	binary.LittleEndian.PutUint16(b[8:10], h.QESVN)
	binary.LittleEndian.PutUint16(b[10:12], h.PCESVN)
	copy(b[12:28], h.QEVendorID[:])
	copy(b[28:48], h.UserData[:])
	return b
}

// Marshal encodes the quote in its version 3 layout (reserved bytes zero). Test tools build
// quotes with it; the verifier checks signatures over the bytes it was given, never over this.
func (q *Quote) Marshal() []byte {
	b := make([]byte, 0, quoteSigDataOff+quoteMinSigData+len(q.QEAuthData)+len(q.CertData))
	b = append(b, q.Header.Marshal()...)
	b = append(b, q.Report.Marshal()...)
	sigLen := quoteMinSigData + len(q.QEAuthData) + len(q.CertData)
	b = binary.LittleEndian.AppendUint32(b, uint32(sigLen))
	b = append(b, q.Signature[:]...)
	b = append(b, q.AttestationKey[:]...)
	b = append(b, q.QEReport.Marshal()...)
	b = append(b, q.QEReportSignature[:]...)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(q.QEAuthData)))
	b = append(b, q.QEAuthData...)
	b = binary.LittleEndian.AppendUint16(b, q.CertDataType)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(q.CertData)))
	return append(b, q.CertData...)
}
