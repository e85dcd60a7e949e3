#!/usr/bin/env bash
# On a machine with internet: download the wheels a GPU box without network needs beside its own JAX, for
# Python 3.12 on x86-64 Linux -- keras and the small pure-Python packages it depends on (~4.7 MB). The box's
# own numpy, scipy, h5py and ml-dtypes (JAX brings them) are used as they are. Install on the box with
#     python -m pip install --no-index --find-links wheels keras==3.15.1
# which takes from wheels/ only what is missing there.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform any \
    -d wheels "keras==3.15.1" namex optree absl-py rich markdown-it-py mdurl pygments packaging typing-extensions
ls -l wheels
