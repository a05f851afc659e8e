// Package sshkeys gives a target its SSH host keys: generated once per host
// (ed25519, ECDSA P-256, RSA 3072) in OpenSSH format, kept on persistent
// storage, and installed into the image's /etc/ssh on every boot so the
// host's fingerprints survive reboots and image upgrades.
//
// It must never replace a key that already exists on persistent storage: a
// key file that cannot be read is an error for the operator, not a reason to
// mint a new identity silently.
package sshkeys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"

	"github.com/livebootp/livebootp/startup/safefile"
)

// Types are the key types every host gets, in the order they are reported.
func Types() []string { return []string{"ed25519", "ecdsa", "rsa"} }

// RSABits is the RSA modulus size, OpenSSH's default since 9.x.
const RSABits = 3072

// Key is one host key pair.
type Key struct {
	Type        string // ed25519, ecdsa or rsa
	Private     []byte // OpenSSH PEM ("-----BEGIN OPENSSH PRIVATE KEY-----")
	Public      []byte // authorized_keys line, newline terminated
	Fingerprint string // "ED25519 SHA256:..." as in the boot report
}

// FileName is the key's private file name in /etc/ssh, as sshd expects it.
func (k Key) FileName() string { return "ssh_host_" + k.Type + "_key" }

// Generate creates a new key of type typ; comment ends the public line.
func Generate(typ, comment string) (Key, error) {
	priv, err := newSigner(typ)
	if err != nil {
		return Key{}, err
	}
	return encode(typ, priv, comment)
}

func newSigner(typ string) (crypto.Signer, error) {
	var priv crypto.Signer
	var err error
	switch typ {
	case "ed25519":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case "ecdsa":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "rsa":
		priv, err = rsa.GenerateKey(rand.Reader, RSABits)
	default:
		return nil, fmt.Errorf("unknown SSH host key type %q (want one of %s)", typ, strings.Join(Types(), ", "))
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s host key: %w", typ, err)
	}
	return priv, nil
}

// FromSigner makes the Key of a private key generated elsewhere (the
// init's RSA child process), in OpenSSH's format, which carries the
// comment too.
func FromSigner(typ string, priv crypto.Signer, comment string) (Key, error) {
	return encode(typ, priv, comment)
}

func encode(typ string, priv crypto.Signer, comment string) (Key, error) {
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return Key{}, fmt.Errorf("encode %s host key: %w", typ, err)
	}
	return fromPEM(typ, pem.EncodeToMemory(block), comment)
}

// fromPEM derives the public half and fingerprint of an OpenSSH private key.
func fromPEM(typ string, privPEM []byte, comment string) (Key, error) {
	raw, err := ssh.ParseRawPrivateKey(privPEM)
	if err != nil {
		return Key{}, err
	}
	signer, err := ssh.NewSignerFromKey(raw)
	if err != nil {
		return Key{}, err
	}
	pub := signer.PublicKey()
	want := map[string]string{"ed25519": ssh.KeyAlgoED25519, "ecdsa": ssh.KeyAlgoECDSA256, "rsa": ssh.KeyAlgoRSA}[typ]
	if pub.Type() != want {
		return Key{}, fmt.Errorf("holds a %s key, want %s", pub.Type(), want)
	}
	line := strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(pub)), "\n")
	if comment != "" {
		line += " " + comment
	}
	return Key{
		Type:        typ,
		Private:     privPEM,
		Public:      []byte(line + "\n"),
		Fingerprint: strings.ToUpper(typ) + " " + ssh.FingerprintSHA256(pub),
	}, nil
}

// Generator produces keys of the given type with the given comment;
// Generate is one, and Pregenerate returns one whose work started before
// it is asked.
type Generator func(typ, comment string) (Key, error)

// Pregenerate starts generating one key of each type in the background
// (RSA takes seconds on a slow CPU; the init overlaps it with DHCP and the
// download, before it knows the host name that goes into the comment) and
// returns a Generator that hands them out, falling back to Generate for a
// type asked twice. Only types are made ahead (all when none is given).
func Pregenerate(types ...string) Generator {
	type result struct {
		priv crypto.Signer
		err  error
	}
	if len(types) == 0 {
		types = Types()
	}
	var mu sync.Mutex
	pending := map[string]chan result{}
	for _, t := range types {
		ch := make(chan result, 1)
		pending[t] = ch
		go func() {
			priv, err := newSigner(t)
			ch <- result{priv, err}
		}()
	}
	return func(typ, comment string) (Key, error) {
		mu.Lock()
		ch, ok := pending[typ]
		delete(pending, typ)
		mu.Unlock()
		if !ok {
			return Generate(typ, comment)
		}
		r := <-ch
		if r.err != nil {
			return Key{}, r.err
		}
		return encode(typ, r.priv, comment)
	}
}

// ErrLater from a Generator means the key is not ready and will be
// installed by someone else once it is: Ensure leaves it out, without an
// error.
var ErrLater = errors.New("host key not generated yet")

// Ensure returns the host keys kept in dir, generating (with gen) and
// writing atomically those that are missing. dir == "" means there is no
// persistent storage: every key is new. created lists the types generated
// now. A key file that exists but cannot be parsed is an error naming it.
func Ensure(dir, comment string, gen Generator) (keys []Key, created []string, err error) {
	if gen == nil {
		gen = Generate
	}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, nil, fmt.Errorf("SSH host key directory: %w", err)
		}
	}
	var errs []error
	for _, typ := range Types() {
		if dir != "" {
			path := filepath.Join(dir, "ssh_host_"+typ+"_key")
			// A power cut in an earlier boot's write leaves a temporary
			// file; the key itself is whole or absent (written atomically).
			for _, p := range []string{path, path + ".pub"} {
				if err := safefile.RemoveStale(p); err != nil {
					errs = append(errs, err)
				}
			}
			b, rerr := os.ReadFile(path)
			if rerr == nil {
				k, perr := fromPEM(typ, b, comment)
				if perr != nil {
					errs = append(errs, fmt.Errorf("%s: %v; it is kept untouched: remove it to get a new %s host key", path, perr, typ))
					continue
				}
				// The .pub file is derived; rewrite it if it went missing or stale.
				if old, _ := os.ReadFile(path + ".pub"); string(old) != string(k.Public) {
					if werr := safefile.WriteFile(path+".pub", k.Public, 0o644); werr != nil {
						errs = append(errs, werr)
					}
				}
				keys = append(keys, k)
				continue
			}
			if !errors.Is(rerr, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("read SSH host key: %w", rerr))
				continue
			}
		}
		k, gerr := gen(typ, comment)
		if errors.Is(gerr, ErrLater) {
			continue
		}
		if gerr != nil {
			errs = append(errs, gerr)
			continue
		}
		if dir != "" {
			if werr := write(dir, k); werr != nil {
				errs = append(errs, werr)
				continue
			}
		}
		keys = append(keys, k)
		created = append(created, typ)
	}
	return keys, created, errors.Join(errs...)
}

// write stores the public half first, so a private key on disk always has
// its .pub next to it.
func write(dir string, k Key) error {
	path := filepath.Join(dir, k.FileName())
	if err := safefile.WriteFile(path+".pub", k.Public, 0o644); err != nil {
		return err
	}
	return safefile.WriteFile(path, k.Private, 0o600)
}

// WriteAt stores k in the open directory dir, public half first, by
// descriptor alone (see safefile.WriteFileAt).
func WriteAt(dir *os.File, k Key) error {
	if err := safefile.WriteFileAt(dir, k.FileName()+".pub", k.Public, 0o644); err != nil {
		return err
	}
	return safefile.WriteFileAt(dir, k.FileName(), k.Private, 0o600)
}

// Install writes keys into etcSSH (the image's /etc/ssh) with sshd's modes:
// private 0600, public 0644. Host keys shipped in the image are replaced.
func Install(etcSSH string, keys []Key) error {
	if err := os.MkdirAll(etcSSH, 0o755); err != nil {
		return fmt.Errorf("install SSH host keys: %w", err)
	}
	for _, k := range keys {
		if err := write(etcSSH, k); err != nil {
			return fmt.Errorf("install SSH host keys: %w", err)
		}
	}
	return nil
}

// Fingerprints lists the keys' fingerprints in Types() order.
func Fingerprints(keys []Key) []string {
	var out []string
	for _, k := range keys {
		out = append(out, k.Fingerprint)
	}
	return out
}
