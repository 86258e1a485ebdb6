#!/usr/bin/env bash
# The Azure provider's write side against a private azsim (on a free loopback port, stopped on
# exit): every kind of operation carried out once or more through the provider table, each result
# read back (azure_ops_e2e.c). Grants take effect at once (--rbac-delay 0), so nothing waits on a
# clock. Usage: azure_ops_e2e.sh AZSIM TEST_PROGRAM
set -u
azsim=$1
prog=$2
if [ ! -x "$azsim" ] || [ ! -x "$prog" ]; then
    echo "azure_ops_e2e: '$azsim' or '$prog' is not built"
    exit 1
fi
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
e2e_init
azsim_start "$azsim" --rbac-delay 0
"$prog" >"$work/out" 2>"$work/err"
rc=$?
cat "$work/out"
[ $rc = 0 ] || cat "$work/err"
check "every operation kind through the provider (exit $rc)" $rc
e2e_finish
