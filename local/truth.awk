# Stages 2 and 4: predict.py's blocks (stdin) unchanged, each block of a
# clip listed in the first file (path<TAB>label lines of local/locate.py
# dev_picks) followed by a "truth: <label>" line.
#   awk -F'\t' -f local/truth.awk PICKS -
function flush() {
  if (pending != "") print "truth: " pending
  pending = ""
}
NR == FNR { truth["[" $1 "]"] = $2; next }
/^\[.*\]$/ { flush(); if ($0 in truth) pending = truth[$0] }
{ print }
END { flush() }
