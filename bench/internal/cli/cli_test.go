package cli

import (
	"io"
	"testing"
)

func TestProfiles(t *testing.T) {
	q, err := parse([]string{"--quick"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if q.samples != 30 || q.warmup != 3 || q.repeat != 1 || q.bursts != 1 {
		t.Fatalf("quick %+v", q)
	}
	cs, err := cases(q)
	if err != nil || len(cs) != len(QuickFunctions) || cs[0].Size != "test" {
		t.Fatalf("quick cases %v %v", cs, err)
	}
	full, err := parse(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if full.samples != 50 || full.repeat != 3 {
		t.Fatalf("full %+v", full)
	}
	// Containers by default, CPU accounted.
	if full.sandbox != "oci" || !full.cpu {
		t.Fatalf("default sandbox %q, cpu %v", full.sandbox, full.cpu)
	}
	cs, _ = cases(full)
	if len(cs) != 9 || cs[0].Size != "small" {
		t.Fatalf("full cases %v", cs)
	}
	f, _ := parse([]string{"--functions", "sleep,crypto-aes", "--sizes", "test,large", "--samples", "31"}, io.Discard)
	cs, err = cases(f)
	if err != nil || len(cs) != 4 || f.samples != 31 {
		t.Fatalf("filtered %v %v", cs, err)
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--samples", "-1"},
		{"--repeat", "-2"},
		{"--api-host", "http://x"},
		{"--action-memory", "64"},
		{"stray"},
		{"--nope"},
	} {
		if _, err := parse(args, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	for _, fns := range []string{"nosuch", "sleep"} {
		f, _ := parse([]string{"--functions", fns, "--sizes", "huge"}, io.Discard)
		if _, err := cases(f); err == nil {
			t.Errorf("functions %q size huge accepted", fns)
		}
	}
	if _, err := ints("8,0"); err == nil {
		t.Error("concurrency 0 accepted")
	}
	if _, err := ints("8,x"); err == nil {
		t.Error("concurrency x accepted")
	}
}

func TestHostileFlags(t *testing.T) {
	f, err := parse([]string{"--hostile", "--sandbox", "oci"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := cases(f)
	if err != nil || len(cs) != 1 || cs[0].Function != "crypto-md5" || cs[0].Size != "test" || f.models != "teemate" {
		t.Fatalf("hostile defaults %v %v %q", cs, err, f.models)
	}
	for _, args := range [][]string{
		{"--hostile", "--api-host", "http://x", "--auth", "a:b"},
		{"--hostile", "--models", "strawman"},
		{"--hostile", "--hostile-streams", "0"},
	} {
		if _, err := parse(args, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

func TestSealedFlags(t *testing.T) {
	f, err := parse([]string{"--sealed", "--samples", "10"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if f.interval != SealedInterval || f.models != "teemate" {
		t.Fatalf("--sealed: interval %v models %q, want %v and teemate", f.interval, f.models, SealedInterval)
	}
	if f, err = parse([]string{"--sealed", "--interval", "0"}, io.Discard); err != nil || f.interval != 0 {
		t.Fatalf("--sealed --interval 0: %v, %v", f, err)
	}
	if f, err = parse([]string{"--samples", "10"}, io.Discard); err != nil || f.interval != 0 {
		t.Fatalf("without --sealed the interval stays back to back: %v, %v", f, err)
	}
}
