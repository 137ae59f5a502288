#!/usr/bin/env bash
# Gets Fashion-MNIST for `make demo`: Debian's package when root on Debian, else (or if that fails)
# torchvision's download into ${CONNECTOME_DATA:-./data}; when neither works, prints the exact fix.
#   PYTHON=.venv/bin/python bash scripts/get_data.sh
# Environment: CONNECTOME_DATA (data root), PYTHON (interpreter with torchvision),
# GET_DATA_NO_APT=1 (never use apt-get), GET_DATA_SYSTEM_DIR (Debian's folder; tests move it).
set -uo pipefail
root="${CONNECTOME_DATA:-./data}"
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
