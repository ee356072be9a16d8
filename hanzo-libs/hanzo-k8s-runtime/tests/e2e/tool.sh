#!/bin/sh
# The e2e tool: the stdio contract in busybox sh. Echoes its params; fails when they
# contain "fail".
in=$(cat)
echo "read $(printf %s "$in" | wc -c) bytes of params" >&2
case "$in" in
  *fail*) echo "requested failure" >&2; exit 1 ;;
esac
printf '%s\n' "$in"
