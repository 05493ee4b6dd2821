#!/usr/bin/env bash
# Builds the shared Rust core for the Android ABIs into app/src/main/jniLibs, on a machine with
# the Android NDK (ANDROID_NDK_HOME) and cargo-ndk (`cargo install cargo-ndk`), with the
# targets added (`rustup target add aarch64-linux-android armv7-linux-androideabi
# x86_64-linux-android`). The profile is the size-optimised `mobile` one.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
: "${ANDROID_NDK_HOME:?set ANDROID_NDK_HOME to the NDK (Android Studio: SDK Manager → NDK)}"
cargo ndk --platform 26 \
  -t arm64-v8a -t armeabi-v7a -t x86_64 \
  -o "$here/app/src/main/jniLibs" \
  build --profile mobile -p mrbill-core
echo "libmrbill_core.so per ABI in $here/app/src/main/jniLibs"
