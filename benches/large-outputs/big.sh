#!/bin/sh
# 40 MiB JSON string on stdout
printf '"'; head -c 41943040 /dev/zero | tr '\0' a; printf '"'
