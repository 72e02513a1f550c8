// Package linuxamd64 holds libheadcount.a for linux/amd64, built in release mode
// and placed here by "go generate" in the parent package.
//
// It is a package only so that "go mod vendor" copies the directory: the
// headcount package imports it for that reason alone.
package linuxamd64
