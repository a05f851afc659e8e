// Package tftp is the registry's read-only TFTP server: it hands iPXE and pxelinux loaders,
// generated pxelinux.cfg files and image files to firmware that only speaks TFTP. It is shaped
// like net/http: a Server reads requests from a net.PacketConn, a Handler (often a Mux of Dir
// handlers and generated content) answers each with an io.ReaderAt and a size.
//
// Protocol: RFC 1350 (octet and netascii), 2347 (options; unknown or malformed ones are
// ignored, never fatal), 2348 (blksize, capped at Server.MaxBlockSize: 1468 fits Ethernet
// without IP fragmentation), 2349 (tsize, timeout) and 7440 (windowsize). Block numbers roll
// over to 0 after 65535. Only a timeout resends; duplicate ACKs never do (sorcerer's apprentice).
//
// It must never write: every write request gets ERROR 2 "read-only server". It must never serve
// anything outside its roots: names are judged in one place (CleanPath) and Dir opens files
// through os.Root, which refuses ".." and symlinks that lead out; directories, devices and
// FIFOs are refused too. It must never let a flood exhaust the process: concurrent transfers
// are bounded (Server.MaxTransfers) and garbage datagrams are dropped.
//
// Why not pack.ag/tftp (already in go.mod): its Server listens on an address string or a
// *net.UDPConn rather than any net.PacketConn with a context; each transfer socket is bound to
// the wildcard address, so on a multi-homed registry replies may leave from an address the
// client never talked to; handlers push bytes through an io.Writer and a ring buffer (a copy
// per block) instead of the server reading what it needs with pread; a duplicate ACK rewinds
// and resends (the sorcerer's apprentice RFC 1350 warns about), a malformed option value aborts
// the request instead of being ignored, blksize is not capped, and concurrency is unbounded.
// Fixing that is most of a server, so this package is its own (about 1,100 lines with comments).
//
// Use ListenPacket for the request socket: it enables IP_PKTINFO before binding. Transfer
// sockets are opened by the serving process, in its network namespace, not conn's.
//
// Performance: each transfer reads the file in ~64 KiB chunks with one ReadAt (pread) and sends
// a whole window with one sendmmsg whose iovecs point at the chunk, so the per-block path
// allocates nothing and copies nothing in user space.
package tftp
