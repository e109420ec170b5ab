// Package drops is dropcheck's test input. A drop must be reported exactly on the lines that
// mention "report" (a comment there would justify the drop, so the marker is in the code).
package drops

import (
	"errors"
	"io"
	"strconv"
	"strings"
)

func fail() error { return errors.New("x") }

func report() error { return errors.New("x") }

func pair() (int, error) { return 0, nil }

var reportErr = fail()

// Cases holds reported and justified drops.
func Cases(w io.Writer) {
	_ = report()
	_, _ = w.Write([]byte("report"))
	n, _ := strconv.Atoi("report")
	var _ = report()
	_ = reportErr
	if n > 0 {
		_ = report()
	}
	go func() { _ = report() }()

	_ = n
	_ = fail() // the justification on the same line
	// The justification alone on the line above.
	_ = fail()
	/* A block comment above counts too. */
	_ = fail()
	_, _, _ = strings.Cut("a,b", ",")
	_ = len("x")
	x, _ := pair() // a tuple whose error is justified
	_ = x
}
