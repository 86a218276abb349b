#!/bin/bash
# usage: i15ab.sh OUT rounds dirA dirB threads types...
out=$1; rounds=$2; A=$3; B=$4; th=$5; shift 5
: > $out
for r in $(seq $rounds); do
  for t in "$@"; do
    for arm in A B; do
      d=$A; [ $arm = B ] && d=$B
      o=$($d/bench tiny $t 5 1 64 $th 2>&1)
      echo "$r $t $arm $(echo "$o" | grep -E '^  tg64 ' | awk '{print $2}') $(echo "$o" | grep -E 'tg/cpu-s' | awk '{print $5}')" >> $out
    done
  done
done
