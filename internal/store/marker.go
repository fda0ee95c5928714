package store

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// ErrInvalidMarker reports a Page.Marker that no listing of this store
// returned. Callers map it to InvalidInput / InvalidParameterException.
var ErrInvalidMarker = errors.New("store: invalid marker")

// defaultMaxItems is the page size when Page.MaxItems is not positive.
const defaultMaxItems = 100

func (p Page) limit() int {
	if p.MaxItems <= 0 {
		return defaultMaxItems
	}
	return p.MaxItems
}

// encodeMarker packs the sort key of the last item returned into an opaque
// marker. The key is encoded rather than exposed so a listing ordered by
// several columns (policies: name, then ARN) can resume exactly after it.
func encodeMarker(keys ...string) string {
	b, _ := json.Marshal(keys) // a []string always marshals
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeMarker unpacks a marker made by encodeMarker with n keys. An empty
// marker means the first page and yields nil.
func decodeMarker(m string, n int) ([]string, error) {
	if m == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(m)
	if err != nil {
		return nil, fmt.Errorf("%w: %q", ErrInvalidMarker, m)
	}
	var keys []string
	if err := json.Unmarshal(b, &keys); err != nil || len(keys) != n {
		return nil, fmt.Errorf("%w: %q", ErrInvalidMarker, m)
	}
	return keys, nil
}
