#!/usr/bin/env python3
"""Changes a stopped azsim's saved state in place: runs CODE on it and seals it again.

usage: reseal.py DIR CODE

The state of DIR (DIR/state.sealed, AES-256-GCM with DIR/backup.key, b64url of iv | ciphertext |
tag, as azsim_seal writes it) is bound to `d` while CODE runs; `versions(NAME)` gives the versions
of every key of that name. What CODE prints is printed; CODE may set `out["indent"]` to write the
state indented, with blanks between its values, which azsim never writes. For tests that need a
state azsim's API cannot make quickly (an old format, damaged key material, tens of thousands of
assignments).
"""
import base64
import json
import os
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def b64(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def unb64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def main():
    home, code = sys.argv[1], sys.argv[2]
    aes = AESGCM(open(os.path.join(home, "backup.key"), "rb").read())
    raw = unb64(open(os.path.join(home, "state.sealed")).read())
    d = json.loads(aes.decrypt(raw[:12], raw[12:], None))

    def versions(name):
        return [v for vault in d["vaults"] for k in vault["keys"] if k["name"] == name
                for v in k["versions"]]

    out = {"indent": None}
    exec(code, {"d": d, "versions": versions, "base64": base64, "json": json, "out": out})
    text = json.dumps(d, separators=(",", ":")) if out["indent"] is None else \
        json.dumps(d, indent=out["indent"])
    iv = os.urandom(12)
    sealed = b64(iv + aes.encrypt(iv, text.encode(), None))
    with open(os.path.join(home, "state.sealed"), "w") as f:
        f.write(sealed)


if __name__ == "__main__":
    main()
