package startup

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestWithoutAbsentPCIDrivers(t *testing.T) {
	root := t.TempDir()
	mods := filepath.Join(root, "lib", "modules", "6.1.0-test")
	os.MkdirAll(mods, 0o755)
	os.WriteFile(filepath.Join(mods, "modules.alias"), []byte(
		"# Aliases extracted from modules themselves.\n"+
			"alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\n"+
			"alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e\n"+
			"alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000\n"+
			"alias virtio:d00000001v* virtio_net\n"+
			"alias fs-squashfs squashfs\n"), 0o644)
	list := []string{"virtio_pci", "virtio_net", "e1000e", "e1000", "squashfs", "overlay"}

	// No sysfs: nothing is dropped.
	if kept, skipped := withoutAbsentPCIDrivers(root, mods, list); !reflect.DeepEqual(kept, list) || skipped != nil {
		t.Errorf("without /sys/bus/pci: kept %q skipped %q", kept, skipped)
	}

	// A virtio NIC and an Intel 82540EM (e1000) are present.
	for dev, alias := range map[string]string{
		"0000:00:01.0": "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
		"0000:00:02.0": "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00",
	} {
		d := filepath.Join(root, "sys", "bus", "pci", "devices", dev)
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "modalias"), []byte(alias+"\n"), 0o444)
	}
	kept, skipped := withoutAbsentPCIDrivers(root, mods, list)
	if want := []string{"virtio_pci", "virtio_net", "e1000", "squashfs", "overlay"}; !reflect.DeepEqual(kept, want) {
		t.Errorf("kept %q, want %q", kept, want)
	}
	if !reflect.DeepEqual(skipped, []string{"e1000e"}) {
		t.Errorf("skipped %q, want the driver of the absent e1000e", skipped)
	}
}
