package main

import "syscall"

var errAddrInUse error = syscall.EADDRINUSE
