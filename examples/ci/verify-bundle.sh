#!/bin/sh
# CI step: fail the pipeline unless the bundle is signed by enough trusted keys, carries a valid
# root chain, has not expired, and every byte matches its digest. No registry or network needed.
#
#   TRUST_ROOT=trust.json sh examples/ci/verify-bundle.sh dist/awareness-1.4.0.bundle
#
# Exit status is bundle verify's: 0 valid, 1 rejected, 2 usage, 3 environment.
set -eu
BUNDLE="${1:?usage: verify-bundle.sh BUNDLE (or its .parts.json)}"
TRUST="${TRUST_ROOT:-trust.json}"
bundle verify "$BUNDLE" --trust "$TRUST" --no-progress
