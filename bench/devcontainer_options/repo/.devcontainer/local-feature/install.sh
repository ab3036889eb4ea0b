#!/bin/sh
set -e
echo "$GREETING" > /etc/local-feature-greeting
