#!/usr/bin/env bash
# Installs the Debian 12 packages kvreconcile needs to build and test, if any is missing.
# Sourced or run by scripts/quickstart.sh and scripts/test.sh; safe to run again.
set -euo pipefail

packages=(
    build-essential cmake pkg-config git
    libyaml-dev libjansson-dev libcurl4-openssl-dev libssl-dev   # libkvr
    libmicrohttpd-dev                                            # azsim
    libcmocka-dev python3 python3-jsonschema python3-yaml        # tests
    python3-cryptography                                         # azsim_resilience (reseals a state)
    clang libclang-rt-14-dev                                     # fuzzing (libFuzzer)
    curl util-linux ca-certificates                              # test drivers
    time openssl                                                 # benchmarks (tests/bench)
    prometheus                                                   # promtool (tests/lease)
    azure-cli                                                    # azsim_azcli (tests/azsim)
    dpkg-dev file groff-base man-db zsh systemd                  # packaging test
)
# azsim's conformance tests drive it with Azure's JavaScript SDKs: node and npm (any node >= 18).
command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
echo "installing: ${missing[*]}" >&2
sudo=()
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "error: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
