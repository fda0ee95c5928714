package awsproto

import (
	"bytes"
	"encoding/json"
	"net/http"
)

// WriteJSON writes a restJson1 response.
func WriteJSON(w http.ResponseWriter, status int, requestID string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		WriteJSONError(w, Internal(), requestID)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Amzn-Requestid", requestID)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// WriteJSONError writes a restJson1 error: {"__type":…,"message":…} plus the
// X-Amzn-ErrorType header the SDKs read first.
func WriteJSONError(w http.ResponseWriter, e *Error, requestID string) {
	b, _ := json.Marshal(struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}{e.Code, e.Message})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Amzn-Errortype", e.Code)
	h.Set("X-Amzn-Requestid", requestID)
	w.WriteHeader(statusOf(e))
	_, _ = w.Write(b)
}

// DecodeJSON decodes a restJson1 body. Unknown members are ignored, as AWS
// does, so newer SDKs keep working; wrong types and trailing data are errors.
func DecodeJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return &Error{Code: "InvalidRequestException", Message: "Could not parse request body: " + err.Error(), Status: http.StatusBadRequest}
	}
	if dec.More() {
		return &Error{Code: "InvalidRequestException", Message: "Could not parse request body: trailing data after JSON object", Status: http.StatusBadRequest}
	}
	return nil
}
