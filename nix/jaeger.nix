# Jaeger v2 (an OpenTelemetry Collector distribution with Jaeger's storage, query API and web
# UI), the trace backend of the monitoring hosts (nixos/modules/monitoring.nix,
# nixos/lib/jaeger.nix). nixpkgs does not package it. This is the official release binary,
# not a build from source: the Go module (what dev/bootstrap.sh builds for dev/up and the lab,
# the same release, v1.76.0) lacks the web UI, whose assets come from another repository; the
# release embeds them.
{
  lib,
  stdenvNoCC,
  fetchurl,
}:
stdenvNoCC.mkDerivation (finalAttrs: {
  pname = "jaeger";
  # Jaeger numbers its v2 binary 2.x within the v1.x release: v1.76.0 ships jaeger 2.13.0.
  version = "2.13.0";

  src = fetchurl {
    url = "https://github.com/jaegertracing/jaeger/releases/download/v1.76.0/jaeger-${finalAttrs.version}-linux-amd64.tar.gz";
    # Not verified from the project's build machines, which cannot reach GitHub: the hash of
    # the release as published packagings of it record it. A fixed-output derivation refuses
    # any other content, so a wrong hash fails the build; it cannot install another binary.
    hash = "sha256-fGKLXd3ntUObK2SA+z8xkxCyFTWSMRFR5MLi1F9t7RM=";
  };

  dontConfigure = true;
  dontBuild = true;

  # A static Go binary (the release is built without cgo): nothing to patch.
  installPhase = ''
    runHook preInstall
    install -Dm755 jaeger $out/bin/jaeger
    runHook postInstall
  '';

  meta = {
    description = "Jaeger, distributed tracing (OTLP in, web UI and query API out)";
    homepage = "https://www.jaegertracing.io/";
    license = lib.licenses.asl20;
    platforms = ["x86_64-linux"];
    sourceProvenance = [lib.sourceTypes.binaryNativeCode];
    mainProgram = "jaeger";
  };
})
