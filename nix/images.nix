# OCI images, one per service, built without Docker by nixpkgs' dockerTools.
#
# Each image holds only the service binary's runtime closure (glibc, libgcc), CA certificates
# and tzdata: no shell, no package manager, no coreutils. Layers are one store path each
# (dockerTools' layering), so glibc, certificates and tzdata are shared by every service
# image and an update that only touches our code re-pushes one small layer.
#
# Two forms of the same image:
#   <service>-image         buildLayeredImage: a .tar.gz in the store, the form NixOS'
#                           services.k3s.images preloads into k3s.
#   <service>-image-stream  streamLayeredImage: a script that writes the image to stdout
#                           without storing it, for pushing to a registry, e.g.
#                           $(nix build --print-out-paths .#catalog-image-stream) | skopeo ...
{
  pkgs,
  services,
  servicePackages,
  # Commit of the flake source (self.rev, or "dirty" for an uncommitted tree).
  revision,
  # Fixed image creation time, derived from the commit time so it is reproducible.
  created,
  sourceUrl,
}: let
  inherit (pkgs) lib dockerTools;

  # Numeric, non-root, no login shell: the UID distroless images use.
  uid = 65532;

  # A passwd/group so that getpwuid() and the like have an answer; nothing can log in.
  nss = pkgs.runCommand "comptoir-image-nss" {} ''
    mkdir -p $out/etc
    printf 'root:x:0:0:root:/var/empty:/sbin/nologin\ncomptoir:x:${toString uid}:${toString uid}:comptoir:/var/empty:/sbin/nologin\n' > $out/etc/passwd
    printf 'root:x:0:\ncomptoir:x:${toString uid}:\n' > $out/etc/group
  '';

  envName = name: "COMPTOIR_${lib.toUpper name}";

  imageArgs = name: service: let
    package = servicePackages.${name};
  in {
    name = "comptoir/${name}";
    tag = package.version;
    inherit created;
    contents = [
      dockerTools.caCertificates # /etc/ssl/certs/ca-bundle.crt and ca-certificates.crt
      pkgs.tzdata
      nss
    ];
    # /tmp world-writable with the sticky bit, as programs expect; /var/empty is the
    # user's home and working directory, owned by root so the service cannot write to it.
    fakeRootCommands = ''
      mkdir -p tmp var/empty
      chmod 1777 tmp
      chmod 0555 var/empty
    '';
    config = {
      User = "${toString uid}:${toString uid}";
      Entrypoint = [(lib.getExe package)];
      WorkingDir = "/var/empty";
      ExposedPorts."${toString service.port}/tcp" = {};
      Env = [
        # Inside a container the service must listen on every interface, not loopback.
        "${envName name}__HTTP__LISTEN=0.0.0.0:${toString service.port}"
        "SSL_CERT_FILE=/etc/ssl/certs/ca-bundle.crt"
        "TZDIR=${pkgs.tzdata}/share/zoneinfo"
      ];
      Labels = {
        "org.opencontainers.image.title" = service.crate;
        "org.opencontainers.image.description" = package.meta.description;
        "org.opencontainers.image.source" = sourceUrl;
        "org.opencontainers.image.revision" = revision;
        "org.opencontainers.image.version" = package.version;
        "org.opencontainers.image.licenses" = "Apache-2.0";
        "org.opencontainers.image.created" = created;
      };
    };
  };

  mkImages = name: service: let
    args = imageArgs name service;
  in {
    "${name}-image" = dockerTools.buildLayeredImage args;
    "${name}-image-stream" = dockerTools.streamLayeredImage args;
  };
in
  lib.foldlAttrs (acc: name: service: acc // mkImages name service) {} services
