#!/usr/bin/env bash
# Installs the offline datasets this machine can have: Fashion-MNIST from Debian's package.
set -euo pipefail
dir=/usr/share/datasets/fashion-mnist
if [ -f "$dir/train-images-idx3-ubyte.gz" ] || [ -f "${CONNECTOME_DATA:-./data}/fashion-mnist/train-images-idx3-ubyte.gz" ]; then
  echo "Fashion-MNIST: present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Fashion-MNIST is missing. Install it with: sudo apt-get install dataset-fashion-mnist" >&2
  echo "or put the four idx .gz files in \$CONNECTOME_DATA/fashion-mnist" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist
echo "Fashion-MNIST: installed in $dir"
