package headcount

// All cgo build flags of the package live in this file (the wasmtime-go
// layout). The package links the release static library that
// "go generate" builds and places inside the module, so that a plain
// "go build" needs nothing else and "go mod vendor" carries it along:
//
//   build/include/headcount.h
//   build/linux-amd64/libheadcount.a   (or linux-arm64)
//
//   -tags headcount_external   links nothing: give the library and its
//                              system libraries yourself in CGO_LDFLAGS (and
//                              its header directory in CGO_CFLAGS)
//
// The system libraries are what
//   cargo rustc -p headcount-ffi --lib --crate-type staticlib -- --print native-static-libs
// prints for Linux/glibc, less -lc (the C compiler adds it).

//go:generate sh build/generate.sh

/*
#cgo CFLAGS: -I${SRCDIR}/build/include -I${SRCDIR}
#cgo linux,amd64,!headcount_external LDFLAGS: ${SRCDIR}/build/linux-amd64/libheadcount.a
#cgo linux,arm64,!headcount_external LDFLAGS: ${SRCDIR}/build/linux-arm64/libheadcount.a
#cgo !headcount_external LDFLAGS: -lgcc_s -lutil -lrt -lpthread -lm -ldl
#include "headcount.h"
*/
import "C"
