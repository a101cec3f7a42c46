package zkstore

// DropNextWrite makes the next create or multi the store sends get lost on
// its way to the server, as when the connection closes before it is sent
// on.
func DropNextWrite(s *Store) { s.dropWrite.Store(true) }
