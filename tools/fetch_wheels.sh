#!/usr/bin/env bash
# On a machine with internet: download the wheels a GPU box without network needs beside its own JAX
# (keras and the two small packages it brings that such a box may lack), for Python 3.12 on x86-64 Linux.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform any \
    -d wheels "keras==3.15.1" namex optree
ls -l wheels
