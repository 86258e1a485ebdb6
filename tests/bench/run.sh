#!/usr/bin/env bash
# Every benchmark of issue #8, one after the other, on this machine:
#   1. run_estate.sh: a 200-vault estate in azsim (20 ms a request, Key Vault's throttling on):
#      azsim's fastest rate on it and the lower bounds, `plan`, a no-op `apply`, the same reads
#      by a script using Azure's JavaScript SDKs, and a relocation of 1,000 secrets and 20
#      certificates to a new vault against the write limit;
#   2. run_watch.sh: from a file save to the start of watch's run, and watch's CPU while idle.
# Each prints its figures and the machine it ran on; tests/bench/RESULTS.md records them. Their
# knobs (environment) are described at the top of each script; WATCH_SAVES and WATCH_IDLE_S are
# run_watch.sh's two arguments. Takes about 10 minutes (a first run also seeds the estate and
# installs the SDKs with npm).
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/deps.sh
tests/bench/run_estate.sh
tests/bench/run_watch.sh "${WATCH_SAVES:-20}" "${WATCH_IDLE_S:-60}"
