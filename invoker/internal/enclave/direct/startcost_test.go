package direct

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/internal/testtool"
	"github.com/teemate/platform/invoker/internal/enclave"
	"github.com/teemate/platform/invoker/internal/enclave/confine"
)

// TestMeasureStartCost measures what confinement adds to an owner's start (Start: process start
// until its gate answers a ping), confined (with and without pasta) against
// --unsafe-owner-as-root, alternating the modes. Only with TEEMATE_MEASURE_START=N (N starts per
// mode); it logs the figures.
func TestMeasureStartCost(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("TEEMATE_MEASURE_START"))
	if n < 1 || os.Geteuid() != 0 {
		t.Skip("set TEEMATE_MEASURE_START=N (as root) to measure")
	}
	testtool.Require(t, "node")
	wd, _ := os.Getwd()
	js, err := FindOwnerJS(wd)
	if err != nil {
		testtool.Missing(t, err.Error())
	}
	modes := []struct {
		name string
		cfg  Config
	}{
		{"unsafe-owner-as-root", Config{OwnerJS: js, UnsafeOwnerAsRoot: true}},
		{"confined, no egress", Config{OwnerJS: js, Confine: confine.Config{Launcher: launcher, Pasta: "-"}}},
		{"confined + pasta", Config{OwnerJS: js, Confine: confine.Config{Launcher: launcher,
			EgressAllow: []confine.HostPort{{Host: "127.0.0.1", Port: 3233}}}}},
	}
	backends := make([]*Backend, len(modes))
	for i, m := range modes {
		if backends[i], err = New(m.cfg, zap.NewNop()); err != nil {
			t.Fatal(err)
		}
	}
	took := make([][]time.Duration, len(modes))
	dir := t.TempDir()
	for r := 0; r < n; r++ {
		for i := range modes {
			spec := enclave.StartSpec{ID: fmt.Sprintf("m%d-%d", i, r), Image: "nodejs:20", Dir: filepath.Join(dir, fmt.Sprintf("m%d-%d", i, r)), Slots: 4}
			t0 := time.Now()
			o, err := backends[i].Start(context.Background(), spec)
			d := time.Since(t0)
			if err != nil {
				t.Fatalf("%s: %v", modes[i].name, err)
			}
			took[i] = append(took[i], d)
			if err := o.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, m := range modes {
		s := slices.Clone(took[i])
		slices.Sort(s)
		t.Logf("%-22s n=%d  min %6.1f ms  median %6.1f ms  p90 %6.1f ms  max %6.1f ms", m.name, len(s),
			ms(s[0]), ms(s[len(s)/2]), ms(s[len(s)*9/10]), ms(s[len(s)-1]))
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
