# The hardware of a host that has no file of its own under nixos/hosts/: a virtual machine
# with one disk labelled `nixos` and a UEFI boot partition labelled `boot`. Replace it per host
# with the output of `nixos-generate-config` (nixos/hosts/<name>.nix) when a machine differs.
{modulesPath, ...}: {
  imports = [(modulesPath + "/profiles/qemu-guest.nix")];

  boot.loader.systemd-boot.enable = true;
  boot.loader.efi.canTouchEfiVariables = true;
  boot.initrd.availableKernelModules = ["virtio_pci" "virtio_blk" "virtio_scsi" "ahci" "sd_mod"];

  fileSystems."/" = {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
  };
  fileSystems."/boot" = {
    device = "/dev/disk/by-label/boot";
    fsType = "vfat";
    options = ["umask=0077"];
  };

  nixpkgs.hostPlatform = "x86_64-linux";
}
