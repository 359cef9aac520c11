package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	m := NewMain()
	if err := m.ParseFlags(args, os.Getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) || errors.Is(err, ErrDone) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "raftsession: %v\n", err)
		return 1
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	if err := m.Run(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "raftsession: %v\n", err)
		return 1
	}
	code := 0
	select {
	case s := <-sigs:
		fmt.Fprintf(os.Stderr, "raftsession: %v: shutting down (send it again to exit at once)\n", s)
	case <-m.Done():
	case err := <-m.Err():
		fmt.Fprintf(os.Stderr, "raftsession: %v\n", err)
		code = 1
	}
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "raftsession: second signal: exiting at once")
		os.Exit(1)
	}()
	if err := m.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "raftsession: %v\n", err)
		return 1
	}
	return code
}
