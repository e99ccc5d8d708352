// Command fluent-go-client sends events to a Fluentd-compatible server with
// fluent-logger-golang, the library inside Docker's fluentd logging driver, configured the
// way that driver is: RequestAck and SubSecondPrecision on.
//
// It reads one JSON object per line on stdin,
//
//	{"tag": "frontend-apache", "sec": 1700000000, "nsec": 123456789,
//	 "record": {"container_id": "...", "container_name": "/web", "source": "stdout", "log": "..."}}
//
// posts each with PostWithTime, and exits non-zero on the first error. Records are
// map[string]string, exactly the shape the Docker driver sends.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/fluent/fluent-logger-golang/fluent"
)

type event struct {
	Tag    string            `json:"tag"`
	Sec    int64             `json:"sec"`
	Nsec   int64             `json:"nsec"`
	Record map[string]string `json:"record"`
}

func main() {
	host := flag.String("host", "127.0.0.1", "server host")
	port := flag.Int("port", 24224, "server port")
	async := flag.Bool("async", false, "use the library's async mode (as Docker does with fluentd-async)")
	flag.Parse()

	logger, err := fluent.New(fluent.Config{
		FluentHost:         *host,
		FluentPort:         *port,
		RequestAck:         true,
		SubSecondPrecision: true,
		Async:              *async,
		Timeout:            10 * time.Second,
		WriteTimeout:       10 * time.Second,
		MaxRetry:           3,
		AsyncResultCallback: func(_ []byte, err error) {
			if err != nil {
				fmt.Fprintf(os.Stderr, "async send failed: %v\n", err)
				os.Exit(1)
			}
		},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "fluent.New: %v\n", err)
		os.Exit(1)
	}

	sent := 0
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 16<<20)
	for scanner.Scan() {
		var ev event
		if err := json.Unmarshal(scanner.Bytes(), &ev); err != nil {
			fmt.Fprintf(os.Stderr, "bad input line %d: %v\n", sent+1, err)
			os.Exit(2)
		}
		if err := logger.PostWithTime(ev.Tag, time.Unix(ev.Sec, ev.Nsec), ev.Record); err != nil {
			fmt.Fprintf(os.Stderr, "PostWithTime #%d: %v\n", sent+1, err)
			os.Exit(1)
		}
		sent++
	}
	if err := scanner.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "reading stdin: %v\n", err)
		os.Exit(2)
	}
	if err := logger.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "Close: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("{\"sent\": %d}\n", sent)
}
