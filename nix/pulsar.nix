# Apache Pulsar from the official binary release, wrapped with a JRE. nixpkgs has no Pulsar
# (pkgs.pulsar is an editor), and BookKeeper is not packaged either: the bookie, the broker and
# the CLI tools all come from this one release. Used by the dev shell and by the fleet's
# Pulsar role. Keep the version in step with dev/pulsar/pom.xml (see dev/pulsar/RESOLUTION.md).
{
  lib,
  stdenvNoCC,
  fetchurl,
  makeWrapper,
  jdk17_headless,
  bash,
  coreutils,
  gnugrep,
  gnused,
  gawk,
  procps,
  which,
}: let
  jre = jdk17_headless; # Pulsar 4.0 runs on Java 17 or 21; 17 is what dev/ and CI test with.
in
  stdenvNoCC.mkDerivation (finalAttrs: {
    pname = "apache-pulsar";
    version = "4.0.7";

    src = fetchurl {
      urls = [
        "https://archive.apache.org/dist/pulsar/pulsar-${finalAttrs.version}/apache-pulsar-${finalAttrs.version}-bin.tar.gz"
        "https://dlcdn.apache.org/pulsar/pulsar-${finalAttrs.version}/apache-pulsar-${finalAttrs.version}-bin.tar.gz"
      ];
      # NOT YET PINNED. The machine this file was written on cannot reach apache.org, and the
      # published checksum could not be found offline. The first build fails with the real
      # hash; before pasting it, check it against Apache's published checksum:
      #   curl -s https://archive.apache.org/dist/pulsar/pulsar-4.0.7/apache-pulsar-4.0.7-bin.tar.gz.sha512
      #   nix hash convert --hash-algo sha512 --to sri <hex from that file>
      # and verify the release signature (.asc, KEYS) once, as Apache asks.
      hash = lib.fakeHash;
    };

    nativeBuildInputs = [makeWrapper];
    # The release's scripts start with #!/usr/bin/env bash; fixup patches them to this bash.
    buildInputs = [bash];

    dontConfigure = true;
    dontBuild = true;

    installPhase = ''
      runHook preInstall

      mkdir -p $out/share/pulsar $out/bin
      cp -r ./. $out/share/pulsar/
      # Scripts derive PULSAR_HOME from their own path, so they run from share/pulsar/bin;
      # the wrappers in bin/ add the JRE and what the scripts call. Logs default to the
      # (read-only) release folder, so they go to the working directory unless set.
      for cmd in pulsar pulsar-admin pulsar-client pulsar-perf pulsar-shell pulsar-daemon bookkeeper; do
        if [ -e "$out/share/pulsar/bin/$cmd" ]; then
          makeWrapper "$out/share/pulsar/bin/$cmd" "$out/bin/$cmd" \
            --set JAVA_HOME ${jre} \
            --prefix PATH : ${lib.makeBinPath [jre coreutils gnugrep gnused gawk procps which]} \
            --run 'export PULSAR_LOG_DIR="''${PULSAR_LOG_DIR:-$PWD/logs}"'
        fi
      done

      runHook postInstall
    '';

    meta = {
      description = "Apache Pulsar: distributed messaging and streaming (broker, BookKeeper bookie, CLI)";
      homepage = "https://pulsar.apache.org";
      license = lib.licenses.asl20;
      sourceProvenance = [lib.sourceTypes.binaryBytecode];
      platforms = lib.platforms.linux;
      mainProgram = "pulsar";
    };
  })
