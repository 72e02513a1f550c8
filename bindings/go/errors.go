package headcount

/*
#include <stdlib.h>
#include "headcount.h"
*/
import "C"

import "unsafe"

// Status is a status code of the C library (hc_status). Every error this
// package returns is an *Error carrying one.
type Status int

// The status codes of the C ABI. Their numeric values come from the header.
const (
	StatusOK             Status = C.HC_OK
	StatusNullArg        Status = C.HC_ERR_NULL_ARG
	StatusInvalidArg     Status = C.HC_ERR_INVALID_ARG
	StatusInvalidTopic   Status = C.HC_ERR_INVALID_TOPIC
	StatusConfig         Status = C.HC_ERR_CONFIG
	StatusIO             Status = C.HC_ERR_IO
	StatusBufferTooSmall Status = C.HC_ERR_BUFFER_TOO_SMALL
	StatusClosed         Status = C.HC_ERR_CLOSED
	StatusPanic          Status = C.HC_ERR_PANIC
)

// String returns the library's name for the status (hc_status_str).
func (s Status) String() string {
	// hc_status_str returns a static string (or a generic one for unknown
	// values), so there is nothing to free.
	return C.GoString(C.hc_status_str(C.hc_status(s)))
}

// Error is a failed call: the library's status and its message (the
// thread-local hc_last_error() of the failing call, or a message written by
// this package for checks it makes itself).
//
// Compare with errors.Is against the sentinels (ErrInvalidTopic, ErrClosed,
// ...): an *Error matches the sentinel of its Status, also when wrapped.
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "headcount: " + e.Status.String()
	}
	return "headcount: " + e.Message
}

// Is reports whether target is an *Error with the same Status and either no
// message (a sentinel) or the same message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok || t == nil {
		return false
	}
	return t.Status == e.Status && (t.Message == "" || t.Message == e.Message)
}

// Sentinels, one per failure status, for errors.Is.
var (
	// ErrNullArg: a required pointer was NULL. This package never passes
	// one, so seeing it means a bug in the package or the library.
	ErrNullArg error = &Error{Status: StatusNullArg}
	// ErrInvalidArg: an argument other than a topic is invalid (a peer
	// address, for example).
	ErrInvalidArg error = &Error{Status: StatusInvalidArg}
	// ErrInvalidTopic: a topic is empty or longer than max_topic_len bytes.
	ErrInvalidTopic error = &Error{Status: StatusInvalidTopic}
	// ErrConfig: an unknown configuration key or an invalid value.
	ErrConfig error = &Error{Status: StatusConfig}
	// ErrIO: a socket operation failed (binding the listen address, for
	// example).
	ErrIO error = &Error{Status: StatusIO}
	// ErrBufferTooSmall: an output buffer was too small. The package grows
	// its buffers and retries, so callers should not see it.
	ErrBufferTooSmall error = &Error{Status: StatusBufferTooSmall}
	// ErrClosed: the node was closed.
	ErrClosed error = &Error{Status: StatusClosed}
	// ErrPanic: the library caught a panic of its own (a bug in it).
	ErrPanic error = &Error{Status: StatusPanic}
)

// newError turns a failed status and the shim's malloc'ed copy of the
// library's message into an *Error, freeing the copy. It returns nil for OK.
func newError(st C.hc_status, msg *C.char) error {
	var m string
	if msg != nil {
		m = C.GoString(msg)
		C.free(unsafe.Pointer(msg))
	}
	if Status(st) == StatusOK {
		return nil
	}
	return &Error{Status: Status(st), Message: m}
}
