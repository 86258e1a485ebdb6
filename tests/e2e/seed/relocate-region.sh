# Sourced by apply_scenario.sh for relocate-region once before/ has converged: the old vault gets
# a certificate (self-signed, exportable key, PFX), which the relocation must copy to the new
# vault with its private key. scenario_verify (run when after/ has converged) checks the copy.
relocate_kv=$(azsim_token "https://vault.localhost:$AZSIM_PORT")
openssl req -x509 -newkey rsa:2048 -nodes -subj "/CN=backup-restore.contoso.example" -days 400 \
    -keyout "$work/cert.key" -out "$work/cert.pem" 2>/dev/null
openssl pkcs12 -export -inkey "$work/cert.key" -in "$work/cert.pem" -passout pass: \
    -out "$work/cert.pfx" 2>/dev/null
relocate_x5t=$(openssl x509 -in "$work/cert.pem" -outform DER | openssl dgst -sha1 -binary |
    base64 | tr '+/' '-_' | tr -d '=')
/usr/bin/python3 -c 'import base64,json,sys; print(json.dumps({"value": base64.b64encode(open(sys.argv[1],"rb").read()).decode(), "policy": {"key_props": {"exportable": True, "kty": "RSA", "key_size": 2048, "reuse_key": False}, "secret_props": {"contentType": "application/x-pkcs12"}}, "tags": {"use": "restore-tls"}}))' \
    "$work/cert.pfx" >"$work/cert.json"
curl -sS --cacert "$AZSIM_CA" -X POST -H "Authorization: Bearer $relocate_kv" -H 'Content-Type: application/json' \
    "https://kv-contoso-bkp-weu.vault.localhost:$AZSIM_PORT/certificates/restore-tls/import?api-version=7.5" \
    -d @"$work/cert.json" >"$work/cert.import"
check "seed: certificate imported into the old vault" \
    "$([[ $(json 'd.get("x5t","")' <"$work/cert.import") == "$relocate_x5t" ]]; echo $?)"
rm -f "$work/cert.key" "$work/cert.pfx" "$work/cert.json"

scenario_verify() {
    local got pem
    relocate_kv=$(azsim_token "https://vault.localhost:$AZSIM_PORT") # the clock moved on
    got=$(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $relocate_kv" \
        "https://kv-contoso-bkp-sdc.vault.localhost:$AZSIM_PORT/certificates/restore-tls/?api-version=7.5")
    check "the certificate is in the new vault (same thumbprint, its tags)" \
        "$([[ $(echo "$got" | json 'd.get("x5t","") + " " + d.get("tags",{}).get("use","")') == "$relocate_x5t restore-tls" ]]; echo $?)"
    # its private key came along: the new vault's managed secret holds a PFX with a key that
    # matches the certificate
    pem=$(curl -sS --cacert "$AZSIM_CA" -H "Authorization: Bearer $relocate_kv" \
        "https://kv-contoso-bkp-sdc.vault.localhost:$AZSIM_PORT/secrets/restore-tls/?api-version=7.5" |
        json 'd["value"]' | base64 -d | openssl pkcs12 -nodes -passin pass: 2>/dev/null)
    check "the copied certificate carries its private key" "$(
        [[ -n $pem && $(echo "$pem" | openssl pkey -pubout 2>/dev/null | sha256sum) == \
            $(openssl x509 -in "$work/cert.pem" -pubkey -noout | sha256sum) ]]
        echo $?)"
}
