#!/usr/bin/env bash
# Build the OpenTelemetry Collector that collector-config/ runs on, once; print its path as the last line.
#
#   bash scripts/otelcol.sh            # builds on first use (minutes), then answers at once from the cache
#   "$(bash scripts/otelcol.sh | tail -n 1)" validate --config=collector-config/agent.yaml
#
# The distribution is scripts/otelcol-builder.yaml: every component module pinned at one collector release.
# It is built with the OpenTelemetry Collector Builder (ocb, go.opentelemetry.io/collector/cmd/builder) at
# that same release, installed with `go install`. The binary is cached under
#   ${OTEL_SENTRY_BRIDGE_CACHE:-${XDG_CACHE_HOME:-~/.cache}/otel-sentry-bridge}/otelcol-<manifest hash>/otelcol-bridge
# so any change to the manifest builds anew and an unchanged one is reused. Go modules land in Go's own
# module cache (~/go/pkg/mod, about 1.5 GB for this build). Needs `go` (scripts/system-deps.sh installs it).
# Progress goes to stderr; stdout carries only the path.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
manifest="$root/scripts/otelcol-builder.yaml"
cache="${OTEL_SENTRY_BRIDGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/otel-sentry-bridge}"
hash="$(sha256sum "$manifest" | cut -c1-16)"
out="$cache/otelcol-$hash"
binary="$out/otelcol-bridge"

say() { echo "otelcol.sh: $*" >&2; }

if [ -x "$binary" ]; then
  echo "$binary"
  exit 0
fi

# The release: dist.version in the manifest (ocb is taken at the same release).
release="$(sed -n 's/^  version: *\([0-9][0-9.]*\) *$/\1/p' "$manifest" | head -n 1)"
if [ -z "$release" ]; then
  say "no dist.version in $manifest"
  exit 1
fi

if ! command -v go >/dev/null 2>&1; then
  say "go is not installed: run scripts/system-deps.sh (or install Go 1.24 or newer)"
  exit 1
fi
mkdir -p "$cache"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
# The collector's modules ask for Go 1.26. Go 1.21 and newer fetch the toolchain a module asks for from the
# Go module proxy by themselves (GOTOOLCHAIN=auto). An older Go (Debian 12's golang-go is 1.19) cannot: it
# fetches that same toolchain module (golang.org/toolchain) once, here, and hands over to it.
BOOTSTRAP_GO="go1.26.8"
go_minor="$(go env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p')"
if [ -n "$go_minor" ] && [ "$go_minor" -lt 21 ]; then
  toolchain="$cache/$BOOTSTRAP_GO"
  if [ ! -x "$toolchain/bin/go" ]; then
    say "$(go env GOVERSION) is older than Go 1.21: fetching $BOOTSTRAP_GO from the Go module proxy (about 80 MB)"
    module="golang.org/toolchain@v0.0.1-$BOOTSTRAP_GO.$(go env GOOS)-$(go env GOARCH)"
    scratch="$(mktemp -d)"
    dir="$(cd "$scratch" && GOFLAGS=-mod=mod go mod download -json "$module" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')"
    rm -rf "$scratch" "$toolchain.partial"
    cp -r "$dir" "$toolchain.partial"
    chmod -R u+w "$toolchain.partial"
    chmod +x "$toolchain.partial"/bin/* "$toolchain.partial"/pkg/tool/*/*  # module zips keep no mode bits
    mv "$toolchain.partial" "$toolchain"
  fi
  export PATH="$toolchain/bin:$PATH"
  export GOROOT="$toolchain"
fi
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"

# One build at a time per cache (parallel test sessions, CI steps): the others wait, then reuse it.
exec 9>"$cache/otelcol.lock"
flock 9
if [ -x "$binary" ]; then
  echo "$binary"
  exit 0
fi

ocb_dir="$cache/ocb-v$release"
ocb="$ocb_dir/builder"
if [ ! -x "$ocb" ]; then
  say "installing ocb v$release (go install go.opentelemetry.io/collector/cmd/builder@v$release)"
  GOBIN="$ocb_dir" go install "go.opentelemetry.io/collector/cmd/builder@v$release" >&2
fi

work="$out.partial"
rm -rf "$work"
mkdir -p "$work"
# ocb writes sources and binary to dist.output_path: a copy of the manifest says where.
sed "s|^  version: *$release *\$|  version: $release\n  output_path: $work/src|" "$manifest" > "$work/builder.yaml"
say "building the collector v$release into $out (first build: several minutes)"
started=$(date +%s)
"$ocb" --config="$work/builder.yaml" >&2
elapsed=$(( $(date +%s) - started ))
mv "$work/src/otelcol-bridge" "$work/otelcol-bridge"
"$work/otelcol-bridge" --version >&2
printf 'release %s\nbuilt %s\nseconds %s\nbytes %s\n' "$release" "$(date -u +%FT%TZ)" "$elapsed" \
  "$(stat -c %s "$work/otelcol-bridge")" > "$work/build-info.txt"
rm -rf "$work/src" "$out"
mv "$work" "$out"
say "built in ${elapsed}s: $(cat "$out/build-info.txt" | tr '\n' ' ')"
echo "$binary"
