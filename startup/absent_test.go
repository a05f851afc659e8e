package startup

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// moduleTree makes root/lib/modules/6.1.0-test with the given files
// (modules.dep, modules.alias, ...) and returns root and that directory.
func moduleTree(t *testing.T, files map[string]string) (root, mods string) {
	t.Helper()
	root = t.TempDir()
	mods = filepath.Join(root, "lib", "modules", "6.1.0-test")
	if err := os.MkdirAll(mods, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(mods, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root, mods
}

func TestWithoutAbsentHardware(t *testing.T) {
	root, mods := moduleTree(t, map[string]string{"modules.alias": "# Aliases extracted from modules themselves.\n" +
		"alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\n" +
		"alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e\n" +
		"alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000\n" +
		"alias pci:v000010ECd00008168sv*sd*bc*sc*i* r8169\n" +
		"alias pci:v000014E4d00001644sv*sd*bc*sc*i* tg3\n" +
		"alias pci:v*d*sv*sd*bc01sc06i01* ahci\n" +
		"alias pci:v00008086d00002922sv*sd*bc*sc*i* i2c_i801\n" +
		"alias acpi*:PNP0C09:* i2c_i801\n" + // another bus: cannot tell, stays
		"alias cpu:type:x86,ven*fam*mod*:feature:*0094* crc32c_intel\n" +
		"alias crypto-crc32c crc32c_intel\n" +
		"alias virtio:d00000001v* virtio_net\n" +
		"alias fs-squashfs squashfs\n",
		"modules.dep": "kernel/drivers/net/phy/libphy.ko:\n" +
			"kernel/drivers/net/phy/mdio_devres.ko: kernel/drivers/net/phy/libphy.ko\n" +
			"kernel/drivers/net/ethernet/realtek/r8169.ko: kernel/drivers/net/phy/mdio_devres.ko kernel/drivers/net/phy/libphy.ko\n" +
			"kernel/drivers/net/ethernet/broadcom/tg3.ko: kernel/drivers/net/phy/libphy.ko\n" +
			"kernel/drivers/ata/libata.ko:\n" +
			"kernel/drivers/ata/ahci.ko: kernel/drivers/ata/libata.ko\n"})
	ix, err := readModIndex(mods)
	if err != nil {
		t.Fatal(err)
	}
	list := []string{"virtio_pci", "virtio_net", "e1000e", "e1000", "libphy", "mdio_devres", "r8169", "tg3",
		"libata", "ahci", "i2c_i801", "crc32c_intel", "squashfs", "overlay"}

	// No sysfs: nothing is dropped.
	if kept, skipped := withoutAbsentHardware(root, mods, list, ix); !reflect.DeepEqual(kept, list) || skipped != nil {
		t.Errorf("without /sys: kept %q skipped %q", kept, skipped)
	}

	// A virtio NIC, an Intel 82540EM (e1000) and a Broadcom tg3 are
	// present; the CPU has no SSE4.2 (feature 0094).
	for dev, alias := range map[string]string{
		"0000:00:01.0": "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
		"0000:00:02.0": "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00",
		"0000:00:03.0": "pci:v000014E4d00001644sv00001AF4sd00001100bc02sc00i00",
	} {
		d := filepath.Join(root, "sys", "bus", "pci", "devices", dev)
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "modalias"), []byte(alias+"\n"), 0o444)
	}
	cpu := filepath.Join(root, "sys", "devices", "system", "cpu")
	os.MkdirAll(cpu, 0o755)
	os.WriteFile(filepath.Join(cpu, "modalias"), []byte("cpu:type:x86,ven0000fam0006mod0006:feature:,0000,0001,0002,0081,0093\n"), 0o444)
	kept, skipped := withoutAbsentHardware(root, mods, list, ix)
	// libphy stays for tg3; mdio_devres came only with r8169, libata
	// only with ahci.
	if want := []string{"virtio_pci", "virtio_net", "e1000", "libphy", "tg3", "i2c_i801", "squashfs", "overlay"}; !reflect.DeepEqual(kept, want) {
		t.Errorf("kept %q, want %q", kept, want)
	}
	if want := []string{"e1000e", "r8169", "ahci", "crc32c_intel", "mdio_devres", "libata"}; !reflect.DeepEqual(skipped, want) {
		t.Errorf("skipped %q, want %q", skipped, want)
	}

	// With SSE4.2, crc32c_intel loads.
	os.WriteFile(filepath.Join(cpu, "modalias"), []byte("cpu:type:x86,ven0000fam0006mod0006:feature:,0000,0081,0094\n"), 0o444)
	if kept, _ := withoutAbsentHardware(root, mods, list, ix); !contains(kept, "crc32c_intel") {
		t.Errorf("crc32c_intel dropped on a CPU with SSE4.2: kept %q", kept)
	}
}
