package main

import "testing"

func TestParseMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"auto", 0, true}, {"off", -1, true}, {"1048576", 1 << 20, true},
		{"1536MiB", 1536 << 20, true}, {"2GiB", 2 << 30, true}, {"64KiB", 64 << 10, true},
		{"0", 0, false}, {"-5", 0, false}, {"2GB", 0, false}, {"GiB", 0, false}, {"9999999999GiB", 0, false},
	} {
		got, err := parseMemoryLimit(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseMemoryLimit(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
