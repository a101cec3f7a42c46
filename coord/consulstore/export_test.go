package consulstore

// LoseNextReply makes the answer of the next transaction the store commits
// and the server applies get lost, as when the connection dies in between;
// then, at that instant, runs then. (A commit the server refuses, such as
// one planned on state that moved since, is left alone.)
func LoseNextReply(s *Store, then func()) { s.loseReply.Store(&then) }

// LoseNextRefusal makes the answer of the next transaction the store
// commits and the agent refuses get lost; then, at that instant, runs then.
func LoseNextRefusal(s *Store, then func()) { s.loseRefusal.Store(&then) }

// DropNextWrite makes the next transaction the store commits get lost on
// its way to the agent, as when the connection dies before it is sent on.
func DropNextWrite(s *Store) { s.dropWrite.Store(true) }

// BeforeNextCommit makes f run once between the next transaction's plan and
// its commit, as a writer that got in between.
func BeforeNextCommit(s *Store, f func()) { s.beforeCommit.Store(&f) }

// ReadAsOldAgent makes the store read as it does from an agent older than
// Consul 1.14, which has no get-or-empty.
func ReadAsOldAgent(s *Store) { s.oldAgent.Store(true) }
