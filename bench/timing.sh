#!/usr/bin/env bash
# The /send timing check that SECURITY.md quotes: 1,000 numbers that may sign in and 1,000 that
# may not, interleaved, through a provider that answers in 60 ms plus exponential jitter (30 ms
# mean). It compares the two samples with a two-sample Kolmogorov–Smirnov test at p = 0.01: the
# time /send takes to answer, and the time until the code page leaves "sending". A positive
# control (answering after the provider, as the gate once did) must fail the same test, or the
# check could not see a leak. Then the same on a real Caddy, 300 + 300 sends paced 40 ms apart in
# both orders, through a restcomm fake that answers in 60 ms. About three minutes; loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
exec go test -tags timing -count=1 -run "TestSendTimingTellsNothing|TestSendAnswerOfCaddyTellsNothing" -v ./caddyotp
