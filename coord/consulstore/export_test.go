package consulstore

// LoseNextReply makes the next transaction the store commits get applied
// and its answer lost, as when the connection dies in between.
func LoseNextReply(s *Store) { s.loseReply.Store(true) }
