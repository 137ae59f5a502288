#!/usr/bin/env bash
# Gets Fashion-MNIST for `make demo`: Debian's package when root on Debian, else (or if that fails)
# torchvision's download into ${CONNECTOME_DATA:-./data}; when neither works, prints the exact fix.
#   PYTHON=.venv/bin/python bash scripts/get_data.sh
# `bash scripts/get_data.sh kjv` gets the language models' default corpus instead (see get_kjv below).
# Environment: CONNECTOME_DATA (data root), PYTHON (interpreter with torchvision),
# GET_DATA_NO_APT=1 (never use apt-get), GET_DATA_SYSTEM_DIR (Debian's folder; tests move it).
set -uo pipefail
root="${CONNECTOME_DATA:-./data}"

# The King James Bible as Debian's `bible` (packages bible-kjv, bible-kjv-text) prints it with the line
# width pinned, into $root/kjv/kjv.txt (connectome/training/corpus.py pins the bytes): with the installed
# program (installed first when root on Debian), else the two packages fetched without installing them
# (apt-get download, or deb.debian.org where the network allows) and run from a temporary folder.
kjv_sha=ba7c84a755b5ecc052222311dc2d785cd6cf9c0875ca26fc31de1138501496d5
kjv_print() {  # $1: folder holding usr/bin/bible and usr/lib/bible.data ("" = the installed ones)
  local bin="${1:+$1/usr/bin/}bible" lib="${1:-}/usr/lib"
  COLUMNS=80 "$bin" -p "$lib" -l80 "gen1:1-rev22:21" > "$root/kjv/kjv.txt.tmp" 2>/dev/null \
    && [ "$(sha256sum "$root/kjv/kjv.txt.tmp" | cut -d' ' -f1)" = "$kjv_sha" ] \
    && mv "$root/kjv/kjv.txt.tmp" "$root/kjv/kjv.txt"
}
get_kjv() {
  if [ -f "$root/kjv/kjv.txt" ] && [ "$(sha256sum "$root/kjv/kjv.txt" | cut -d' ' -f1)" = "$kjv_sha" ]; then
    echo "KJV corpus: present ($root/kjv/kjv.txt)"; return 0
  fi
  mkdir -p "$root/kjv"
  if [ -f /etc/debian_version ] && [ "$(id -u)" -eq 0 ] && [ -z "${GET_DATA_NO_APT:-}" ] && ! command -v bible >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bible-kjv bible-kjv-text
  fi
  if command -v bible >/dev/null && kjv_print ""; then echo "KJV corpus: written to $root/kjv/kjv.txt"; return 0; fi
  local tmp; tmp="$(mktemp -d)"
  (cd "$tmp" && { apt-get download bible-kjv bible-kjv-text >/dev/null 2>&1 \
    || { curl -fsSLO http://deb.debian.org/debian/pool/main/b/bible-kjv/bible-kjv_4.38_amd64.deb \
         && curl -fsSLO http://deb.debian.org/debian/pool/main/b/bible-kjv/bible-kjv-text_4.38_all.deb; }; } \
    && for deb in ./*.deb; do dpkg-deb -x "$deb" root 2>/dev/null || (ar p "$deb" data.tar.xz | tar -xJ -C root); done) >/dev/null 2>&1
  if kjv_print "$tmp/root"; then rm -rf "$tmp"; echo "KJV corpus: written to $root/kjv/kjv.txt"; return 0; fi
  rm -rf "$tmp" "$root/kjv/kjv.txt.tmp"
  echo "KJV corpus is missing and could not be made (no network?). As root on Debian: apt-get install bible-kjv" \
       "bible-kjv-text && mkdir -p $root/kjv && bible -p /usr/lib -l80 gen1:1-rev22:21 > $root/kjv/kjv.txt" \
       "(sha256 $kjv_sha), or set data.path to any UTF-8 text file." >&2
  return 1
}
if [ "${1:-}" = kjv ]; then get_kjv; exit $?; fi

system_dir="${GET_DATA_SYSTEM_DIR:-/usr/share/datasets/fashion-mnist}"
py="${PYTHON:-.venv/bin/python}"
[ -x "$py" ] || py="$(command -v python3 || echo python3)"
files="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"

# The folders connectome reads Fashion-MNIST from (connectome/training/datasets.py).
present() {
  local d
  for d in "$system_dir" "$root/fashion-mnist" "$root/FashionMNIST/raw"; do
    if [ -f "$d/train-images-idx3-ubyte.gz" ] || [ -f "$d/train-images-idx3-ubyte" ]; then return 0; fi
  done
  return 1
}

if present; then
  echo "Fashion-MNIST: present"
  exit 0
fi

debian=no
if [ -f /etc/debian_version ] && command -v apt-get >/dev/null 2>&1; then debian=yes; fi

if [ "$debian" = yes ] && [ "$(id -u)" -eq 0 ] && [ -z "${GET_DATA_NO_APT:-}" ]; then
  if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist \
     && present; then
    echo "Fashion-MNIST: installed in $system_dir"
    exit 0
  fi
  echo "Fashion-MNIST: apt-get could not install dataset-fashion-mnist; trying torchvision" >&2
fi

echo "Fashion-MNIST: downloading with torchvision into $root/FashionMNIST/raw"
if "$py" - "$root" <<'PYTHON' && present; then
import sys

import torchvision.datasets as tvd

for train in (True, False):
    tvd.FashionMNIST(sys.argv[1], train=train, download=True)
PYTHON
  echo "Fashion-MNIST: downloaded to $root/FashionMNIST/raw"
  exit 0
fi

{
  echo
  echo "Fashion-MNIST is missing and could not be downloaded (no network?). To fix it, either:"
  if [ "$debian" = yes ]; then
    echo "  sudo apt-get install dataset-fashion-mnist"
  fi
  echo "  mkdir -p $root/fashion-mnist && cd $root/fashion-mnist && for f in $files; do"
  echo "    curl -fLO https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/\$f; done"
  echo "or copy those four files from another machine into $root/fashion-mnist/"
  echo "(set CONNECTOME_DATA to use another folder), then run make demo again."
} >&2
exit 1
