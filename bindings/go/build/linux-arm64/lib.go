// Package linuxarm64 holds libheadcount.a for linux/arm64, built in release mode
// and placed here by "go generate" in the parent package.
//
// It is a package only so that "go mod vendor" copies the directory: the
// headcount package imports it for that reason alone.
package linuxarm64
