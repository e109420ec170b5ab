package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/teemate/platform/controller-adapter/internal/app"
)

// invokerCommand is `controller-adapter invoker drain|undrain|status ID`: the operator's calls to a
// running controller-adapter's admin routes (POST /invokers/{id}/drain, .../undrain, GET .../drain).
func invokerCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("controller-adapter invoker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	apiHost := fs.String("apihost", "http://127.0.0.1:3233", "the running controller-adapter's REST endpoint")
	dataDir := fs.String("data-dir", ".state", "the controller-adapter's data directory (its admin.password)")
	pwFile := fs.String("admin-password-file", "", "file with the admin password (default DATA-DIR/admin.password; env "+app.EnvAdminPassword+" overrides)")
	to := fs.String("to", "", "drain: the invoker that takes the images (N or invokerN; default: the controller picks one per image)")
	force := fs.Bool("force", false, "drain: drain even the last invoker that takes activations (new activations are then answered 503 \"No invokers available.\" until undrain)")
	wait := fs.Duration("wait", 10*time.Minute, "drain: wait this long for the invoker to be drained (0: do not wait)")
	asJSON := fs.Bool("json", false, "print the drain's status as JSON")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: controller-adapter invoker [flags] drain ID [--to ID] [--force] | undrain ID | status ID")
		fmt.Fprintln(stderr, "  drain moves the invoker's images one by one to another invoker (each only once it has the image's enclave")
		fmt.Fprintln(stderr, "  warm and keyed), lets its activations in flight finish, and waits until it is drained; undrain gives it")
		fmt.Fprintln(stderr, "  its activations back. Flags may come before or after the command.")
		fs.PrintDefaults()
	}
	// Flags may follow the command and the id (`invoker drain 1 --to 2`): parse what comes around them.
	var pos []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(pos) != 2 || (pos[0] != "drain" && pos[0] != "undrain" && pos[0] != "status") {
		fs.Usage()
		return errors.New("invoker: expected `drain ID`, `undrain ID` or `status ID`")
	}
	id, err := invokerNumber(pos[1])
	if err != nil {
		return err
	}
	dest := -1
	if *to != "" {
		if pos[0] != "drain" {
			return errors.New("--to goes with drain")
		}
		if dest, err = invokerNumber(*to); err != nil {
			return fmt.Errorf("--to: %w", err)
		}
	}
	pw, _, err := app.AdminPassword(*dataDir, *pwFile, false)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a := app.Admin{APIHost: *apiHost, Password: pw}
	print := func(s app.DrainStatus) {
		if *asJSON {
			b, err := json.Marshal(s)
			if err == nil {
				fmt.Fprintln(stdout, string(b))
				return
			}
		}
		fmt.Fprintln(stdout, describe(s))
	}
	var s app.DrainStatus
	switch pos[0] {
	case "status":
		s, err = a.Status(ctx, id)
	case "undrain":
		s, err = a.Undrain(ctx, id)
	case "drain":
		s, err = a.Drain(ctx, id, dest, *force)
		if err == nil && s.Warning != "" {
			fmt.Fprintf(stderr, "warning: invoker%d is the last invoker that takes activations: %s\n", id, s.Warning)
		}
		if err == nil && *wait > 0 {
			// Each status that differs from the last is printed, the drained one last.
			wctx, cancel := context.WithTimeout(ctx, *wait)
			defer cancel()
			if s, err = a.WaitDrained(wctx, id, 500*time.Millisecond, print); err == nil {
				return nil
			}
		}
	}
	if err != nil {
		return fmt.Errorf("invoker %s %d: %w", pos[0], id, err)
	}
	print(s)
	return nil
}

// invokerNumber reads N or invokerN.
func invokerNumber(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimPrefix(s, "invoker"))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not an invoker (N or invokerN)", s)
	}
	return n, nil
}

// describe is a status in one line for people.
func describe(s app.DrainStatus) string {
	var b strings.Builder
	fmt.Fprintf(&b, "invoker%d: %s", s.Invoker, s.State)
	if len(s.Moved) > 0 {
		images := make([]string, 0, len(s.Moved))
		for image, to := range s.Moved {
			where := fmt.Sprintf("invoker%d", to)
			if to < 0 {
				where = "no invoker"
			}
			images = append(images, image+" -> "+where)
		}
		sort.Strings(images)
		fmt.Fprintf(&b, "; moved %s", strings.Join(images, ", "))
	}
	if s.Preparing != nil {
		fmt.Fprintf(&b, "; preparing %s on invoker%d (%.1fs)", s.Preparing.Image, s.Preparing.On, s.Preparing.Seconds)
	}
	if len(s.Pending) > 0 {
		fmt.Fprintf(&b, "; pending %s", strings.Join(s.Pending, ", "))
	}
	if len(s.NotMoved) > 0 {
		images := make([]string, 0, len(s.NotMoved))
		for image, why := range s.NotMoved {
			images = append(images, fmt.Sprintf("%s (%s)", image, why))
		}
		sort.Strings(images)
		fmt.Fprintf(&b, "; not moved %s", strings.Join(images, ", "))
	}
	if s.State != "serving" {
		fmt.Fprintf(&b, "; %d in flight", s.InFlight)
	}
	if s.Waiting != "" {
		fmt.Fprintf(&b, "; waiting for %s", s.Waiting)
	}
	return b.String()
}
