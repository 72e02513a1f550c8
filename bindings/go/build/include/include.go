// Package include holds headcount.h, the C ABI's header, placed here by
// "go generate" in the parent package (a copy of include/headcount.h).
//
// It is a package only so that "go mod vendor" copies the directory: the
// headcount package imports it for that reason alone.
package include
