package pool

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expectations in testdata/*.txt with what the pool decides now")

// TestScenarios replays testdata/*.txt, in the style of etcd raft's interaction tests. A file is a
// sequence of blocks: a command line, a "----" line, and the expected output up to a blank line.
// Lines starting with # outside a block are comments. Commands:
//
//	new [slots=N] [max-owners=N] [prestart=img,img] [health=DUR] [ping-failures=N] [idle=DUR]
//	reserve IMAGE          cancel TICKET          release TICKET
//	owner-started OWNER    start-failed OWNER MSG owner-exited OWNER MSG
//	ping-ok OWNER          ping-failed OWNER MSG  tick DURATION
//	touch IMAGE            close                  state
//
// Each prints the actions the pool decides, one a line ("ok" when none); reserve prints the
// ticket first, cancel whether the ticket was still waiting, state the pool. With -rewrite the
// files are regenerated from what the pool decides now; review the diff.
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scenarios in testdata/")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runScenario(t, f) })
	}
}

type block struct {
	comments []string // lines before the command
	cmd      string
	want     []string
	line     int
}

func parseScenario(path string) ([]block, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close() // read-only: a close error loses nothing
	var blocks []block
	var cur block
	inWant := false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case inWant && line == "":
			blocks = append(blocks, cur)
			cur, inWant = block{}, false
		case inWant:
			cur.want = append(cur.want, line)
		case line == "----":
			if cur.cmd == "" {
				return nil, fmt.Errorf("%s:%d: ---- without a command", path, n)
			}
			inWant = true
		case line == "" || strings.HasPrefix(line, "#"):
			if cur.cmd != "" {
				return nil, fmt.Errorf("%s:%d: command %q has no ---- line", path, n, cur.cmd)
			}
			cur.comments = append(cur.comments, line)
		default:
			if cur.cmd != "" {
				return nil, fmt.Errorf("%s:%d: command %q has no ---- line", path, n, cur.cmd)
			}
			cur.cmd, cur.line = line, n
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if cur.cmd != "" {
		if !inWant {
			return nil, fmt.Errorf("%s: command %q has no ---- line", path, cur.cmd)
		}
		blocks = append(blocks, cur)
	}
	return blocks, nil
}

func runScenario(t *testing.T, path string) {
	blocks, err := parseScenario(path)
	if err != nil {
		t.Fatal(err)
	}
	d := &driver{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var out strings.Builder
	for _, b := range blocks {
		got, err := d.do(b.cmd)
		if err != nil {
			t.Fatalf("%s:%d: %s: %v", path, b.line, b.cmd, err)
		}
		if *rewrite {
			for _, c := range b.comments {
				out.WriteString(c + "\n")
			}
			out.WriteString(b.cmd + "\n----\n" + strings.Join(got, "\n") + "\n\n")
			continue
		}
		if strings.Join(got, "\n") != strings.Join(b.want, "\n") {
			t.Errorf("%s:%d: %s\ngot:\n%s\nwant:\n%s", path, b.line, b.cmd, strings.Join(got, "\n"), strings.Join(b.want, "\n"))
		}
	}
	if *rewrite {
		if err := os.WriteFile(path, []byte(strings.TrimSuffix(out.String(), "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// driver holds one scenario's pool and clock.
type driver struct {
	p   *Pool
	now time.Time
}

func (d *driver) do(cmd string) ([]string, error) {
	f := strings.Fields(cmd)
	name, args := f[0], f[1:]
	if name != "new" && d.p == nil {
		return nil, errors.New("no pool yet: start with new")
	}
	arg := func(i int) (string, error) {
		if i >= len(args) {
			return "", fmt.Errorf("%s: missing argument %d", name, i+1)
		}
		return args[i], nil
	}
	rest := func(i int) error { return errors.New(strings.Join(args[min(i, len(args)):], " ")) }
	ticket := func() (Ticket, error) {
		s, err := arg(0)
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseUint(s, 10, 64)
		return Ticket(n), err
	}
	var acts []Action
	switch name {
	case "new":
		var cfg Config
		for _, a := range args {
			k, v, _ := strings.Cut(a, "=")
			var err error
			switch k {
			case "slots":
				cfg.SlotsPerOwner, err = strconv.Atoi(v)
			case "max-owners":
				cfg.MaxOwnersPerImage, err = strconv.Atoi(v)
			case "prestart":
				cfg.Prestart = strings.Split(v, ",")
			case "health":
				cfg.HealthInterval, err = time.ParseDuration(v)
			case "ping-failures":
				cfg.PingFailures, err = strconv.Atoi(v)
			case "idle":
				cfg.IdleTimeout, err = time.ParseDuration(v)
			default:
				err = fmt.Errorf("unknown setting %q", k)
			}
			if err != nil {
				return nil, err
			}
		}
		d.p = New(cfg, d.now)
		acts = d.p.Prestart()
	case "reserve":
		img, err := arg(0)
		if err != nil {
			return nil, err
		}
		t, acts := d.p.Reserve(img)
		return append([]string{fmt.Sprintf("ticket %d", t)}, lines(acts)...), nil
	case "cancel":
		t, err := ticket()
		if err != nil {
			return nil, err
		}
		return []string{fmt.Sprintf("waiting %v", d.p.Cancel(t))}, nil
	case "release":
		t, err := ticket()
		if err != nil {
			return nil, err
		}
		acts = d.p.Release(t)
	case "owner-started":
		id, err := arg(0)
		if err != nil {
			return nil, err
		}
		acts = d.p.OwnerStarted(id)
	case "start-failed", "owner-exited", "ping-failed", "ping-ok":
		id, err := arg(0)
		if err != nil {
			return nil, err
		}
		switch name {
		case "start-failed":
			acts = d.p.StartFailed(id, rest(1))
		case "owner-exited":
			acts = d.p.OwnerExited(id, rest(1))
		case "ping-failed":
			acts = d.p.PingResult(id, rest(1))
		default:
			acts = d.p.PingResult(id, nil)
		}
	case "tick":
		s, err := arg(0)
		if err != nil {
			return nil, err
		}
		dur, err := time.ParseDuration(s)
		if err != nil {
			return nil, err
		}
		d.now = d.now.Add(dur)
		acts = d.p.Tick(d.now)
	case "touch":
		img, err := arg(0)
		if err != nil {
			return nil, err
		}
		return []string{fmt.Sprintf("warm %v", d.p.Touch(img))}, nil
	case "close":
		acts = d.p.Close()
	case "state":
		if s := d.p.String(); s != "" {
			return strings.Split(s, "\n"), nil
		}
		return []string{"empty"}, nil
	default:
		return nil, fmt.Errorf("unknown command %q", name)
	}
	return lines(acts), nil
}

func lines(acts []Action) []string {
	if len(acts) == 0 {
		return []string{"ok"}
	}
	out := make([]string, len(acts))
	for i, a := range acts {
		out[i] = a.String()
	}
	return out
}
