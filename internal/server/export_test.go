package server

import "time"

// KeyRetention exposes keyRetention to the tests.
func (s *Server) KeyRetention() time.Duration { return s.keyRetention() }

// KeyReloads is how many sealing-key reloads have started.
func (s *Server) KeyReloads() int64 { return s.keyReloads.Load() }
