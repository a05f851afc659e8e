# livebootp — see README.md. `make demo` and `make test` set up what they need.
GO       ?= go
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BIN      := bin/livebootp
INIT     := bin/livebootp-init
LOADERS  := build/tftpboot
KERNEL   := build/kernel/vmlinuz

.PHONY: all build deps kernel kernel-arm64 loaders demo demo-appliance test test-short bench fuzz vet fmt clean appliance appliance-arm64

all: build

# livebootp-init sits next to livebootp: `livebootp image build` takes it from there.
build: $(BIN) $(INIT)

$(BIN): $(shell find . -name '*.go' -not -path './build/*') go.mod go.sum
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmds/livebootp

$(INIT): $(shell find . -name '*.go' -not -path './build/*') go.mod go.sum
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $@ ./cmds/livebootp-init

deps:
	scripts/install-deps.sh

kernel: deps
	scripts/fetch-kernel.sh build/kernel >/dev/null

kernel-arm64: deps
	scripts/fetch-kernel.sh build/kernel-arm64 arm64 >/dev/null

# The appliance disk image (flash it with `livebootp appliance flash`).
# CONFIG, IMAGES and KEYS, when set, go onto its data partition.
appliance: build kernel
	$(BIN) appliance build --out build/livebootp-amd64.img --arch amd64 \
		$(if $(CONFIG),--config $(CONFIG)) $(if $(IMAGES),--images $(IMAGES)) $(if $(KEYS),--keys $(KEYS))

appliance-arm64: build kernel-arm64
	$(BIN) appliance build --out build/livebootp-arm64.img --arch arm64 \
		$(if $(CONFIG),--config $(CONFIG)) $(if $(IMAGES),--images $(IMAGES)) $(if $(KEYS),--keys $(KEYS))

# Boot loaders from Debian's ipxe and pxelinux packages, staged as the TFTP root.
loaders: deps
	mkdir -p $(LOADERS)
	cp /usr/lib/ipxe/undionly.kpxe /usr/lib/ipxe/ipxe.efi /usr/lib/ipxe/snponly.efi $(LOADERS)/
	cp /usr/lib/PXELINUX/pxelinux.0 /usr/lib/syslinux/modules/bios/ldlinux.c32 $(LOADERS)/

# A registry in a throwaway network namespace and a qemu VM that PXE-boots
# from it through its own iPXE ROM; the VM's console is printed as it boots.
demo: build kernel loaders
	$(GO) run ./cmds/demo -binary $(BIN) -init $(INIT) -loaders $(LOADERS)

# The appliance image in one VM (OVMF), a target PXE-booting from it in another.
demo-appliance: build kernel loaders
	$(GO) run ./cmds/demo -appliance -binary $(BIN) -init $(INIT) -loaders $(LOADERS)

# Every test: unit, network-namespace, fuzz seeds and VM tests (root), then
# every fuzz target for a few seconds (TEST_FUZZTIME).
TEST_FUZZTIME ?= 5s
test: kernel kernel-arm64 loaders
	$(GO) vet ./...
	$(GO) test -race -timeout 40m ./...
	scripts/fuzz.sh $(TEST_FUZZTIME)

test-short:
	$(GO) test -short ./...

bench: build
	bench/run.sh $(BIN)

fuzz:
	scripts/fuzz.sh $(FUZZTIME)

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin build/tftpboot

# The seed's own example as a real image: a Debian bookworm rootfs
# (mmdebstrap; systemd, openssh-server, nginx; cached in build/debian)
# built into nginx-web-server/test and PXE-booted in qemu with its console
# on the terminal, until nginx answers and `ssh root@` logs in with the
# registry's key. Slow (first run ~3 min), so not part of `make test`.
# The test builds livebootp and livebootp-init itself; needs root,
# qemu-system-x86, mmdebstrap, openssh-client and curl.
.PHONY: demo-debian
demo-debian: kernel
	LIVEBOOTP_DEBIAN_VM=1 LIVEBOOTP_CONSOLE=1 $(GO) test -count=1 -v -timeout 20m -run '^TestVMDebianNginx$$' ./startup
