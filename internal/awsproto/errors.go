// Package awsproto speaks the wire protocols of the AWS APIs podid serves:
// the query protocol (form-encoded requests, XML responses) used by IAM and
// STS, and restJson1 used by EKS and EKS Auth. It knows nothing about what
// the operations mean.
package awsproto

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
)

// Error is an AWS API error: the code an SDK switches on, a message for
// people, and the HTTP status.
type Error struct {
	Code    string
	Message string
	Status  int
	// Receiver marks server-side faults (the query protocol's <Type>Receiver</Type>).
	Receiver bool
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf builds a client error (HTTP 400 unless status says otherwise).
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Status: status}
}

// Common errors shared by several services.
func ValidationError(format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, "ValidationError", format, args...)
}

func AccessDenied(format string, args ...any) *Error {
	return Errorf(http.StatusForbidden, "AccessDenied", format, args...)
}

// Internal hides the cause from the client; the caller logs it.
func Internal() *Error {
	return &Error{Code: "InternalFailure", Message: "The request processing has failed because of an unknown error.", Status: http.StatusInternalServerError, Receiver: true}
}

// AsError returns err as an *Error, or an internal error when it is not one.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return Internal()
}

// NewRequestID returns a request ID in the UUID shape AWS uses.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
