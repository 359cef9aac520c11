module github.com/raftsession/raftsession/test/e2e

go 1.26

require github.com/anishathalye/porcupine v1.3.1

replace github.com/raftsession/raftsession => ../..
