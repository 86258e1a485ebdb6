#!/usr/bin/env bash
# Dependents outside the estate gate a relocation's retirement (issue #21). relocate-region's
# before/ is applied; then, in resource groups the desired state never names, a storage account
# gets a customer-managed key on the old vault's key (versionless), a disk encryption set a
# versionless key URL on it, a SQL server its TDE protector (a version), a Cosmos DB account its
# key, and an app an app setting that is a Key Vault reference to the old
# vault's secret. after/ runs through every gate and past every retention period: the old vault
# must still be there, the plan naming each dependent by resource id (gates and to-do findings).
# Once each dependent points at the new vault, the next apply retires the old one. Discovery is
# one Resource Graph query plus one read per app with an identity; the consuming service must
# never lose a data key.
# usage: apply_dependents.sh KVRECONCILE AZSIM
set -euo pipefail
. "$(dirname "$0")/lib.sh"
scenario_init "$1" "$2" relocate-region
azsim_start "$azsim" --subscription "$sub" --rbac-delay 3 --data-keys 20 --rewrap-rate 10

kvr_apply "apply before/" 0 -f "$B" --wait 2m

arm=$(azsim_token "$KVR_ARM_ENDPOINT")
armcall() { # METHOD PATH BODY -> response on stdout, status in $code
    local out
    out=$(curl -sS --cacert "$AZSIM_CA" -X "$1" -H "Authorization: Bearer $arm" \
        -H 'Content-Type: application/json' -w '\n%{http_code}' "$KVR_ARM_ENDPOINT$2" ${3:+-d "$3"})
    code=${out##*$'\n'}
    printf '%s\n' "${out%$'\n'*}"
}
S="/subscriptions/$sub"
ST="$S/resourceGroups/rg-contoso-data/providers/Microsoft.Storage/storageAccounts/stcontosodata"
DES="$S/resourceGroups/rg-contoso-vms/providers/Microsoft.Compute/diskEncryptionSets/des-contoso"
APP="$S/resourceGroups/rg-contoso-web/providers/Microsoft.Web/sites/app-contoso-restore"
SQL="$S/resourceGroups/rg-contoso-db/providers/Microsoft.Sql/servers/sql-contoso"
COSMOS="$S/resourceGroups/rg-contoso-db/providers/Microsoft.DocumentDB/databaseAccounts/cosmos-contoso"
old="https://kv-contoso-bkp-weu.vault.localhost:$AZSIM_PORT"
new="https://kv-contoso-bkp-sdc.vault.localhost:$AZSIM_PORT"
storage_put() { # VAULT_URI
    armcall PUT "$ST?api-version=2023-05-01" "{\"location\":\"westeurope\",\"kind\":\"StorageV2\",\"sku\":{\"name\":\"Standard_LRS\"},\"identity\":{\"type\":\"SystemAssigned\"},\"properties\":{\"encryption\":{\"keySource\":\"Microsoft.Keyvault\",\"keyvaultproperties\":{\"keyvaulturi\":\"$1\",\"keyname\":\"backup-dek\",\"keyversion\":\"\"},\"services\":{\"blob\":{\"enabled\":true,\"keyType\":\"Account\"}}}}}" >/dev/null
}
des_put() { # VAULT_URI VAULT_NAME RG
    armcall PUT "$DES?api-version=2023-04-02" "{\"location\":\"westeurope\",\"identity\":{\"type\":\"SystemAssigned\"},\"properties\":{\"activeKey\":{\"sourceVault\":{\"id\":\"$S/resourceGroups/$3/providers/Microsoft.KeyVault/vaults/$2\"},\"keyUrl\":\"$1/keys/backup-dek\"},\"encryptionType\":\"EncryptionAtRestWithCustomerKey\",\"rotationToLatestKeyVersionEnabled\":true}}" >/dev/null
}
settings_put() { # VAULT_URI
    armcall PUT "$APP/config/appsettings?api-version=2023-12-01" "{\"properties\":{\"EXPORT_PASSPHRASE\":\"@Microsoft.KeyVault(SecretUri=$1/secrets/backup-export-passphrase/)\",\"PLAIN\":\"not a reference\"}}" >/dev/null
}
sql_put() { # KEY_URL
    armcall PUT "$SQL?api-version=2023-08-01" "{\"location\":\"westeurope\",\"identity\":{\"type\":\"SystemAssigned\"},\"properties\":{\"administratorLogin\":\"sqladmin\",\"administratorLoginPassword\":\"not-a-real-Passw0rd\",\"keyId\":\"$1\"}}" >"$work/sql.json"
}
cosmos_put() { # VAULT_URI
    armcall PUT "$COSMOS?api-version=2024-05-15" "{\"location\":\"westeurope\",\"kind\":\"GlobalDocumentDB\",\"properties\":{\"databaseAccountOfferType\":\"Standard\",\"locations\":[{\"locationName\":\"westeurope\"}],\"keyVaultKeyUri\":\"$1/keys/backup-dek\"}}" >/dev/null
}
for rg in rg-contoso-data rg-contoso-vms rg-contoso-web rg-contoso-db; do
    armcall PUT "$S/resourceGroups/$rg?api-version=2021-04-01" '{"location":"westeurope"}' >/dev/null
done
storage_put "$old"
check "storage account with a CMK on the old vault created ($code)" "$([[ $code == 200 ]]; echo $?)"
des_put "$old" kv-contoso-bkp-weu rg-contoso-backup-weu
check "disk encryption set on the old vault created ($code)" "$([[ $code == 200 ]]; echo $?)"
armcall PUT "$APP?api-version=2023-12-01" '{"location":"westeurope","kind":"app","identity":{"type":"SystemAssigned"},"properties":{}}' >/dev/null
settings_put "$old"
check "app with a Key Vault reference created ($code)" "$([[ $code == 200 ]]; echo $?)"
kvtok=$(azsim_token "https://vault.localhost:$AZSIM_PORT")
oldver=$(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $kvtok" "$old/keys/backup-dek?api-version=7.5" | json 'd["key"]["kid"].rsplit("/",1)[1]')
sql_put "$old/keys/backup-dek/$oldver"
check "SQL server with its TDE protector in the old vault created ($code)" \
    "$([[ $code == 200 ]] && ! grep -q Passw0rd "$work/sql.json"; echo $?)"
cosmos_put "$old"
check "Cosmos DB account with its key in the old vault created ($code)" "$([[ $code == 200 ]]; echo $?)"
refs=$(armcall GET "$APP/config/configreferences/appsettings?api-version=2023-12-01")
check "App Service resolves the reference" \
    "$([[ $(echo "$refs" | json '[(i["name"], i["properties"]["status"], i["properties"]["vaultName"]) for i in d["value"]]') == "[('EXPORT_PASSPHRASE', 'Resolved', 'kv-contoso-bkp-weu')]" ]]; echo $?)"
armcall POST "/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01" \
    '{"subscriptions":["'"$sub"'"],"query":"resources | project id"}' >"$work/graph.other"
check "Resource Graph: another query is a 400 InvalidQuery ($code)" \
    "$([[ $code == 400 ]] && grep -q InvalidQuery "$work/graph.other"; echo $?)"

# the plan of the pull request: every dependent, by resource id, as a gate and as work to do
set +e; NO_COLOR=1 "$kvr" plan -f "$A" >"$work/plan.1" 2>&1; set -e
for id in "$ST" "$DES" "$APP" "$SQL" "$COSMOS"; do
    check "plan: the old vault's retirement waits for ${id##*/}" \
        "$(grep -q "waiting for: .*($id) uses .*; move it to another vault first" "$work/plan.1"; echo $?)"
    check "plan: ${id##*/} is on the relocation's to-do list" \
        "$(grep -q "to move: $id uses" "$work/plan.1"; echo $?)"
done
before=$(curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/stats" | json 'd["requests"].get("arm.resourceGraph.resources",0)')
set +e; "$kvr" plan -f "$A" >/dev/null 2>&1; set -e
after=$(curl -sS --cacert "$AZSIM_CA" "$AZSIM_URL/stats" | json 'd["requests"].get("arm.resourceGraph.resources",0)')
check "discovery is one Resource Graph query per plan ($((after - before)))" "$([[ $((after - before)) == 1 ]]; echo $?)"

# through every gate and past every retention period: the old vault stays
kvr_apply "apply after/" "0 3" -f "$A" --wait 1m
for days in 8 32 92; do
    azsim_advance $((days * 86400))
    kvr_apply "apply after/ $days days later" 3 -f "$A"
done
check "blocked on the dependents" "$(grep -q "stcontosodata" "$work/err.$kvr_n"; echo $?)"
arm=$(azsim_token "$KVR_ARM_ENDPOINT") # the clock moved past the first token's expiry
armcall GET "$S/resourceGroups/rg-contoso-backup-weu/providers/Microsoft.KeyVault/vaults/kv-contoso-bkp-weu?api-version=2024-11-01" >/dev/null
check "the old vault is still there ($code)" "$([[ $code == 200 ]]; echo $?)"

# the owners move four of them: the app still holds the vault
storage_put "$new"
des_put "$new" kv-contoso-bkp-sdc rg-contoso-backup-sdc
kvtok=$(azsim_token "https://vault.localhost:$AZSIM_PORT")
newver=$(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $kvtok" "$new/keys/backup-dek?api-version=7.5" | json 'd["key"]["kid"].rsplit("/",1)[1]')
sql_put "$new/keys/backup-dek/$newver"
cosmos_put "$new"
kvr_apply "apply after/: the app still uses the old vault" 3 -f "$A"
set +e; NO_COLOR=1 "$kvr" plan -f "$A" >"$work/plan.2" 2>&1; set -e
check "plan: only the app still holds the old vault" \
    "$(grep -q "($APP) uses secret 'backup-export-passphrase'" "$work/plan.2" &&
        ! grep -q "stcontosodata\|des-contoso\|sql-contoso\|cosmos-contoso" "$work/plan.2"; echo $?)"
settings_put "$new"
kvr_apply "apply after/: nothing uses the old vault any more" 0 -f "$A"
armcall GET "$S/resourceGroups/rg-contoso-backup-weu/providers/Microsoft.KeyVault/vaults/kv-contoso-bkp-weu?api-version=2024-11-01" >/dev/null
check "the old vault is retired ($code)" "$([[ $code == 404 ]]; echo $?)"
kvr_plan_empty "$A"
check "azsim: no data key lost" "$([[ $(azsim_lost) == 0 ]]; echo $?)"
azsim_stop # its sanitizer report, if any, is written at exit
e2e_sanitizer_scan
e2e_finish
