#!/usr/bin/env bash
# credentialRotation (issue #15): kvreconcile mints the backup app's client secrets itself, every
# 30 days, over three generations. Each one is stored (aos-backup-cred-<day>) before anything
# uses it, the profile that names `credential: latest` moves to it, the previous one stays for
# the 7-day overlap, then is marked and, after retention.appSecrets, removed with its stored copy.
# The consumer never loses its data keys and always signs in, a second apply on the same day
# makes no second generation, and a plan of the converged state is empty.
# usage: apply_credential_rotation.sh KVRECONCILE AZSIM
set -euo pipefail
kvr=$(realpath "$1")
azsim=$(realpath "$2")
. "$(dirname "$0")/lib.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
sub=3f1c9a7e-2b4d-4e8f-9a61-7c5d2e0b8f43
e2e_init
azsim_start "$azsim" --subscription "$sub" --rbac-delay 0 --data-keys 20 --rewrap-rate 10
E="$work/estate"
mkdir -p "$E"
cp "$root/tests/fixtures/plan/credential-rotation-steady/desired/"*.yaml "$E/"
sed -i 's/every: 90d/every: 30d/; s/overlap: 14d/overlap: 7d/' "$E/identity.yaml"
tokens() { # an hour each: taken again after the clock moves
    graph=$(azsim_token "$KVR_GRAPH_ENDPOINT")
    kv=$(azsim_token "https://vault.localhost:$AZSIM_PORT")
    prof=$(azsim_token "https://profiles.localhost:$AZSIM_PORT")
}
profile_gen() { # the generation the profile signs in with (its kvr-credential metadata)
    curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $prof" \
        "https://profiles.localhost:$AZSIM_PORT/encryptionProfiles?api-version=2026-01-01" |
        json '[p for p in d["value"] if p["name"] == "contoso-backup-2026-11"][0]["metadata"].get("kvr-credential", "")'
}
signs_in_with() { # GEN: the profile uses GEN, a client secret the app still has
    [[ $(profile_gen) == "$1" && " $(gens) " == *" kvr:$1 "* ]]
}
gens() { # the app's client secrets, by name, sorted
    curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $graph" \
        "$KVR_GRAPH_ENDPOINT/v1.0/applications?\$filter=displayName%20eq%20'Contoso%20backup%20encryption%20(aos-backup)'" |
        json '" ".join(sorted(c["displayName"] for a in d["value"] for c in a["passwordCredentials"]))'
}
copies() { # the stored copies in the vault, by name, sorted
    curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $kv" \
        "https://kv-contoso-bkp-weu.vault.localhost:$AZSIM_PORT/secrets?api-version=7.5" |
        json '" ".join(sorted(s["id"].rsplit("/", 1)[1] for s in d["value"] if "/aos-backup-cred-" in s["id"]))'
}
day() { curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/clock" | json '__import__("time").strftime("%Y-%m-%d", __import__("time").gmtime(d["now"]))'; }
days=0
advance() { azsim_advance $(($1 * 86400)); days=$((days + $1)); tokens; }
tokens

g1=$(day)
kvr_apply "day 0: first generation" 0 -f "$E" --wait 2m
check "  one generation, kvr:$g1 ($(gens))" "$([[ $(gens) == "kvr:$g1" ]]; echo $?)"
check "  stored as aos-backup-cred-$g1 ($(copies))" "$([[ $(copies) == "aos-backup-cred-$g1" ]]; echo $?)"
check "  the profile signs in with it" "$(signs_in_with "$g1"; echo $?)"
kvr_plan_empty "$E"

advance 31
g2=$(day)
kvr_apply "day 31: the second generation" 0 -f "$E" --wait 2m
kvr_apply "day 31 again: nothing new" 0 -f "$E" --wait 1m
check "  two generations, the previous one within its overlap ($(gens))" \
    "$([[ $(gens) == "kvr:$g1 kvr:$g2" ]]; echo $?)"
check "  both stored ($(copies))" "$([[ $(copies) == "aos-backup-cred-$g1 aos-backup-cred-$g2" ]]; echo $?)"
check "  the fromAppCredential secret holds the new one" \
    "$([[ $(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $kv" \
        "https://kv-contoso-bkp-weu.vault.localhost:$AZSIM_PORT/secrets/aos-backup-client-secret?api-version=7.5" | json 'd["value"]' | sha256sum) == \
        "$(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $kv" \
        "https://kv-contoso-bkp-weu.vault.localhost:$AZSIM_PORT/secrets/aos-backup-cred-$g2?api-version=7.5" | json 'd["value"]' | sha256sum)" ]]; echo $?)"
check "  the profile moved to it" "$(signs_in_with "$g2"; echo $?)"
kvr_plan_empty "$E"

advance 8
kvr_apply "day 39: the overlap is over, the first is marked" "0 3" -f "$E" --wait 1m
advance 8
kvr_apply "day 47: retention passed, the first goes" "0 3" -f "$E" --wait 1m
check "  one generation left ($(gens))" "$([[ $(gens) == "kvr:$g2" ]]; echo $?)"
check "  its stored copy is soft-deleted, the new one's kept ($(copies))" \
    "$([[ $(copies) == "aos-backup-cred-$g2" ]]; echo $?)"
check "  the profile signs in with the one left" "$(signs_in_with "$g2"; echo $?)"

advance 15
g3=$(day)
kvr_apply "day 62: the third generation" 0 -f "$E" --wait 2m
check "  the profile moved to it" "$(signs_in_with "$g3"; echo $?)"
advance 8
kvr_apply "day 70: the second is marked" "0 3" -f "$E" --wait 1m
advance 8
kvr_apply "day 78: the second goes" "0 3" -f "$E" --wait 1m
check "  only the third is left ($(gens))" "$([[ $(gens) == "kvr:$g3" ]]; echo $?)"
check "  and its stored copy ($(copies))" "$([[ $(copies) == "aos-backup-cred-$g3" ]]; echo $?)"
check "  the profile signs in with it" "$(signs_in_with "$g3"; echo $?)"
kvr_plan_empty "$E"
check "consumer: never a data key lost or unavailable over $days days" \
    "$([[ $(azsim_lost) == 0 ]]; echo $?)"
e2e_finish
