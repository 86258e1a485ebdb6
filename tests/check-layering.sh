#!/usr/bin/env bash
# The folder rules of STYLE.md, checked on the #include lines:
#   util   libc only;  model  + libyaml;  plan  pure (no curl, OpenSSL, libyaml, inotify);
#   cli    only the public headers in reconciler/include/kvr (plus its own cli.h);
#   providers  no kvr/plan.h, kvr/apply.h, nor any type of the desired state.
# Also: file names are unique across the tree, and no banned unsafe libc call is used.
set -u
cd "$(dirname "$0")/.." || exit 1
fail=0
bad() { echo "layering: $*"; fail=1; }

check() { # dir, forbidden-regex, what
    [ -d "$1" ] || return 0
    local hits
    hits=$(grep -rnE "^[[:space:]]*#[[:space:]]*include[[:space:]]*[<\"]($2)" "$1" --include='*.[ch]' || true)
    [ -z "$hits" ] || bad "$3:"$'\n'"$hits"
}
check reconciler/util 'curl/|openssl/|yaml\.h|jansson\.h|sys/inotify\.h|microhttpd' "util must use libc only"
check reconciler/model 'curl/|openssl/|sys/inotify\.h|microhttpd' "model must not touch the network"
check reconciler/plan 'curl/|openssl/|yaml\.h|sys/inotify\.h|microhttpd' "plan must stay pure"
# A provider sees names and operations, never the plan or the desired state (kvr/provider.h).
desired='\bkvr_estate\b|\bkvr_vault\b|\bkvr_app\b|\bkvr_key\b|\bkvr_secret\b|\bkvr_profile\b|\bkvr_credential\b|\bkvr_role_assignment\b|kvr_step'
if [ -d reconciler/providers ]; then
    hits=$(grep -rnE "^[[:space:]]*#[[:space:]]*include[[:space:]]*[<\"]kvr/(plan|apply)\.h|$desired" \
           reconciler/providers --include='*.[ch]' || true)
    [ -z "$hits" ] || bad "providers must not see plan.h, apply.h or the desired types:"$'\n'"$hits"
fi
# ... nor through the headers they include: the seam's own headers stay below the plan.
hits=$(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]kvr/(plan|apply)\.h' \
       reconciler/include/kvr/op.h reconciler/include/kvr/provider.h reconciler/include/kvr/live.h \
       reconciler/include/kvr/providers.h reconciler/include/kvr/azure.h || true)
[ -z "$hits" ] || bad "the provider headers must not include plan.h or apply.h:"$'\n'"$hits"
# The executor reaches a cloud only through the provider table: no curl, no Azure header.
check reconciler/apply 'curl/|kvr/azure\.h|kvr/providers\.h' "apply must not reach past the provider seam"
hits=$(grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' reconciler/cli --include='*.[ch]' |
       grep -vE '"(kvr/[a-z_]+\.h|cli\.h)"' || true)
[ -z "$hits" ] || bad "cli must use only include/kvr headers:"$'\n'"$hits"

dups=$(git ls-files '*.c' '*.h' 2>/dev/null | xargs -r -n1 basename | sort | uniq -d)
[ -z "$dups" ] || bad "file names must be unique across the tree: $dups"

banned=$(grep -rnE '(^|[^a-zA-Z0-9_])(gets|strcpy|strcat|sprintf|vsprintf|strtok|tmpnam|mktemp)[[:space:]]*\(' \
         reconciler --include='*.c' || true)
[ -z "$banned" ] || bad "banned libc calls (use snprintf, memcpy with sizes, strtok_r, mkstemp):"$'\n'"$banned"

if [ $fail -eq 0 ]; then echo "1 passed, 0 failed"; else echo "0 passed, 1 failed"; fi
exit $fail
