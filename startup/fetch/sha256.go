package fetch

import (
	"crypto/sha256"
	"errors"
	"hash"
	"io"

	"golang.org/x/sys/unix"
)

// newSHA256 is the hash the download is verified with: the kernel's
// sha256 through an AF_ALG socket when the kernel offers one, else Go's.
// Hashing is what a download costs on a slow or emulated CPU (Go's code
// without SHA-NI or AVX2 hashes at ~12 MB/s per guest GHz under qemu TCG,
// the kernel's C about twice as fast, and the kernel picks SHA-NI or AVX2
// code on CPUs that have them). The name says which one ran, for the
// console.
func newSHA256() (h hash.Hash, name string) {
	if k, err := newKernelSHA256(); err == nil {
		return k, "kernel"
	}
	return sha256.New(), "go"
}

// kernelSHA256 is a hash.Hash computed by the kernel: data written to an
// AF_ALG "hash" operation socket is hashed there, and reading from it
// returns the digest. Close releases its two descriptors.
type kernelSHA256 struct {
	tfm int   // bound to "sha256"; accept(2) on it starts a new hash
	op  int   // the hash in progress
	err error // a failed Reset: the state is not the data's any more
}

func newKernelSHA256() (*kernelSHA256, error) {
	tfm, err := unix.Socket(unix.AF_ALG, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(tfm, &unix.SockaddrALG{Type: "hash", Name: "sha256"}); err != nil {
		unix.Close(tfm)
		return nil, err
	}
	op, err := accept(tfm)
	if err != nil {
		unix.Close(tfm)
		return nil, err
	}
	return &kernelSHA256{tfm: tfm, op: op}, nil
}

// accept is accept4(2) without an address: unix.Accept fails on AF_ALG,
// whose peer address it cannot convert.
func accept(fd int) (int, error) {
	for {
		nfd, _, errno := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(fd), 0, 0, unix.SOCK_CLOEXEC, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return -1, errno
		}
		return int(nfd), nil
	}
}

func (k *kernelSHA256) Write(p []byte) (int, error) {
	if k.err != nil {
		return 0, k.err
	}
	done := 0
	for done < len(p) {
		// MSG_MORE: more data follows, do not finish the hash yet.
		n, err := unix.SendmsgN(k.op, p[done:], nil, nil, unix.MSG_MORE)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		if n == 0 {
			return done, io.ErrShortWrite
		}
		done += n
	}
	return done, nil
}

// Sum reads the digest from a copy of the hash in progress (accept(2) on
// an operation socket clones its state), so the hash can go on.
func (k *kernelSHA256) Sum(b []byte) []byte {
	sum, err := k.sum()
	if err != nil {
		// hash.Hash has no error return; a digest that cannot match is
		// the safe answer (the download then fails its checksum).
		return append(b, make([]byte, sha256.Size)...)
	}
	return append(b, sum...)
}

func (k *kernelSHA256) sum() ([]byte, error) {
	if k.err != nil {
		return nil, k.err
	}
	c, err := accept(k.op)
	if err != nil {
		return nil, err
	}
	defer unix.Close(c)
	sum := make([]byte, sha256.Size)
	n, err := unix.Read(c, sum)
	if err != nil {
		return nil, err
	}
	if n != sha256.Size {
		return nil, io.ErrUnexpectedEOF
	}
	return sum, nil
}

func (k *kernelSHA256) Reset() {
	op, err := accept(k.tfm)
	if err != nil {
		k.err = err
		return
	}
	unix.Close(k.op)
	k.op, k.err = op, nil
}

func (k *kernelSHA256) Size() int      { return sha256.Size }
func (k *kernelSHA256) BlockSize() int { return sha256.BlockSize }

func (k *kernelSHA256) Close() error {
	return errors.Join(unix.Close(k.op), unix.Close(k.tfm))
}
