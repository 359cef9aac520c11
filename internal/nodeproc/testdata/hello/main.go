// Command hello prints its arguments, for nodeproc's Build test.
package main

import (
	"fmt"
	"os"
)

func main() { fmt.Println("hello", os.Args[1:]) }
