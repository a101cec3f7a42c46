// Package coord defines Store, a small hierarchical coordination store in the
// style of ZooKeeper, and recipes built only on it.
//
// A Store holds nodes named by slash-separated paths ("/a/b/c"). Every node has
// data (a byte slice, possibly empty) and a version; it is persistent, or
// ephemeral (removed when the session that created it ends), and may be created
// with a sequential name. Reads, versioned writes, children listings, watches
// and all-or-nothing transactions have the same meaning on every backend:
//
//   - github.com/coordkit/coord/coord/etcdstore: etcd v3 (and an embedded etcd server),
//   - github.com/coordkit/coord/coord/zkstore: ZooKeeper, with plain ZooKeeper nodes,
//   - github.com/coordkit/coord/coord/consulstore: Consul's KV store.
//
// The package conformance holds the suite that pins these semantics; every
// backend passes it case for case.
//
// # Paths
//
// A path starts with "/", has no empty, "." or ".." component, no trailing
// slash (except the root "/"), no control characters, is valid UTF-8 and is at
// most MaxPathLen bytes long. Anything else is ErrInvalidPath. The root always
// exists, has no data and cannot be written or deleted.
//
// # Versions
//
// A node's version counts the changes to its data since it was created: 0 when
// created, one more after each Set. The same number is reported by Get, Exists,
// Set, Txn and in watch events, and it is what Set, Delete and CheckOp compare
// against. AnyVersion matches every version.
//
// # Errors
//
// Every failure wraps one of the sentinel errors of this package (or the
// context's error) in a *PathError naming the operation and the path, so
// errors.Is(err, coord.ErrNoNode) works on every backend.
package coord
