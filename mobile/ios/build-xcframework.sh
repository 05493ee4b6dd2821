#!/usr/bin/env bash
# Builds the shared Rust core for iOS (device + simulators) into
# MrBillKit/MrBillCoreFFI.xcframework, on a Mac with Xcode and the Rust targets added:
#   rustup target add aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios
# The profile is the size-optimised `mobile` one. The Swift bindings are generated on any
# machine (`./x bindings`) and committed; this script only packages the library.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
target="${CARGO_TARGET_DIR:-$root/target}"
cd "$root"
for t in aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios; do
  cargo build --profile mobile -p mrbill-core --target "$t"
done

work="$(mktemp -d)"
headers="$work/headers"
mkdir -p "$headers" "$work/sim"
cp "$here/MrBillKit/Sources/Generated/"*.h "$headers/"
# One module map naming both C modules the generated Swift imports.
cat "$here/MrBillKit/Sources/Generated/"*.modulemap > "$headers/module.modulemap"
# The two simulator architectures in one fat library.
lipo -create \
  "$target/aarch64-apple-ios-sim/mobile/libmrbill_core.a" \
  "$target/x86_64-apple-ios/mobile/libmrbill_core.a" \
  -output "$work/sim/libmrbill_core.a"

out="$here/MrBillKit/MrBillCoreFFI.xcframework"
rm -rf "$out"
xcodebuild -create-xcframework \
  -library "$target/aarch64-apple-ios/mobile/libmrbill_core.a" -headers "$headers" \
  -library "$work/sim/libmrbill_core.a" -headers "$headers" \
  -output "$out"
rm -rf "$work"
echo "built $out"
