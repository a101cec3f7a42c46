//go:build !unix

package etcdembed

import "os"

// tryLock does nothing where flock(2) is missing: etcd's own file lock
// then makes a second server in the directory wait.
func tryLock(*os.File) error { return nil }
