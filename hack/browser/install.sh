#!/usr/bin/env bash
# Installs the headless browser the catalog's browser tests and benchmark drive:
# Debian's chromium, through apt-get, only when it is missing. Playwright's own
# browser download is not used, so the browser comes from the same archive as the
# rest of the machine's packages.
#
# Prints the browser's path on stdout; progress goes to stderr.
set -euo pipefail

browser=/usr/bin/chromium
if [ -x "$browser" ]; then echo "$browser"; exit 0; fi

echo "installing Debian package: chromium" >&2
apt-get install -y --no-install-recommends chromium >&2 || {
  apt-get update >&2 && apt-get install -y --no-install-recommends chromium >&2; }
echo "$browser"
