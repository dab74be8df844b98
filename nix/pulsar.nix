# Apache Pulsar from the official binary release, wrapped with a JRE. nixpkgs has no Pulsar
# (pkgs.pulsar is an editor), and BookKeeper is not packaged either: the bookie, the broker and
# the CLI tools all come from this one release. Used by the dev shell and by the fleet's
# Pulsar role. The local standalone runs 4.0.7 jars from Maven (4.0.8's broker jars are not all
# served to our build machines, see dev/pulsar/RESOLUTION.md); this package is the 4.0.8 release.
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
    version = "4.0.8";

    src = fetchurl {
      # The same release tarball Apache publishes, as deployed to Maven Central (the one
      # download reachable from the project's build machines). Checked on 2026-11-29: its SHA-1
      # matches Central's published .sha1 (c1778d3c31fa53616190d644bb69616f9a3ae2fc).
      urls = [
        "https://repo1.maven.org/maven2/org/apache/pulsar/pulsar-server-distribution/${finalAttrs.version}/pulsar-server-distribution-${finalAttrs.version}-bin.tar.gz"
        "https://archive.apache.org/dist/pulsar/pulsar-${finalAttrs.version}/apache-pulsar-${finalAttrs.version}-bin.tar.gz"
      ];
      hash = "sha256-NcfQZMngko7b8ucImJ+roDeWYvmKqEzg1BkMWe+2dl4=";
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
