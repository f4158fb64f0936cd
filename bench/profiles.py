#!/usr/bin/env python3
"""Writes a profiles.toml of many profiles for the benchmarks.

    bench/profiles.py PATH KIND:COUNT...

Profiles are named p00, p01, ... (as many digits as the total count has), in the order the
kinds are given. Kinds (each needs the secret named after it in the keychain):
  api-key     Patchworks API key (api_key)
  basic       generic Basic (password)
  improvado   Improvado Basic (password)
  bearer      a pasted token expiring in 30 days (token)
  login       a Patchworks login endpoint at a closed port (password; store a token too)
"""
import datetime
import sys

EXPIRES = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)).strftime(
    "%Y-%m-%dT%H:%M:%SZ")
KINDS = {
    "api-key": ("patchworks-api-key", "api_key", ['base_url = "https://app.wearepatchworks.com"']),
    "basic": ("basic", "password", ['username = "u"']),
    "improvado": ("improvado-basic", "password",
                  ['base_url = "https://embedded.improvado.io/api/v3"', 'username = "u@example.com"']),
    "bearer": ("bearer", "token", [f'expires_at = "{EXPIRES}"']),
    "login": ("patchworks-login", "password", ['base_url = "http://127.0.0.1:9"', 'username = "u"']),
}


def main(path, specs):
    plan = []
    for spec in specs:
        kind, count = spec.split(":")
        plan += [kind] * int(count)
    width = len(str(len(plan)))
    out = ["version = 1", ""]
    for i, kind in enumerate(plan):
        preset, secret, settings = KINDS[kind]
        n = f"p{i:0{width}d}"
        out += [f"[profiles.{n}]", f'preset = "{preset}"', f'secrets = ["{secret}"]',
                f"[profiles.{n}.settings]", *settings, ""]
    with open(path, "w") as f:
        f.write("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
