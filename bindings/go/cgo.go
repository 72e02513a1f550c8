package headcount

// All cgo build flags of the package live in this file (the wasmtime-go
// layout). The package links the static library by its full path, because
// target/ holds both libheadcount.a and libheadcount.so and "-lheadcount"
// would pick the shared one.
//
//   default                      ../../target/debug/libheadcount.a    (cargo build -p headcount-ffi)
//   -tags headcount_release      ../../target/release/libheadcount.a  (cargo build -p headcount-ffi --release)
//   -tags headcount_external     nothing: give the library and its system
//                                libraries yourself in CGO_LDFLAGS (and the
//                                header directory in CGO_CFLAGS if it is not
//                                ../../include)
//
// The system libraries are what
//   cargo rustc -p headcount-ffi --lib --crate-type staticlib -- --print native-static-libs
// prints for Linux/glibc, less -lc (the C compiler adds it).

/*
#cgo CFLAGS: -I${SRCDIR}/../../include -I${SRCDIR}
#cgo !headcount_release,!headcount_external LDFLAGS: ${SRCDIR}/../../target/debug/libheadcount.a
#cgo headcount_release,!headcount_external LDFLAGS: ${SRCDIR}/../../target/release/libheadcount.a
#cgo !headcount_external LDFLAGS: -lgcc_s -lutil -lrt -lpthread -lm -ldl
#include "headcount.h"
*/
import "C"
