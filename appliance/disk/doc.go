// Package disk makes the appliance's disk image and writes it to a USB stick
// or SD card.
//
// The image is GPT with a protective MBR and two FAT32 partitions: an EFI
// system partition (systemd-boot for x86 UEFI, extlinux/extlinux.conf for
// U-Boot boards, the kernel and the appliance initramfs) and a data partition
// labelled LIVEBOOTP (config.yml, images/, ssh-authorized-keys/) that a user
// can open and edit from any laptop. Build writes such an image file; Flash
// copies it to a whole disk and grows the data partition to the end of that
// disk.
//
// Everything is done with go-diskfs in this process: no mkfs, sgdisk or dd
// is run, so the same code builds images on a workstation and on the
// appliance itself. Flash must never write to a disk that is mounted, used
// as swap, holds the running system's root, or is smaller than the image, and
// never without asking unless the caller says so; a partition is refused too,
// since the image carries its own partition table.
package disk
