"""The constant POSIX sh scripts the driver runs inside the proxy container (install with validation, restore).
Every value reaches them as a positional argument, never as script text. No imports."""
from __future__ import annotations

# Runs inside the proxy container, as root, as `sh -c INSTALL_SCRIPT sh PATH MODE SWAP [--stdin N]
# [--also PATH2 SWAP2] VALIDATOR...`: every value is a positional argument, never part of the script text.
# `--stdin N`: the new files come on standard input, in the same exec as their validation: the first N
# bytes are PATH's, the rest PATH2's, each written to .lbgen-new with mode 0644 (exit 5, the input drained,
# when they cannot be or fewer than N bytes came; `head -c` reads no further than N bytes, in coreutils
# and BusyBox alike); without it, the .lbgen-new files were delivered before (an archive write).
# MODE (the kind's validate_mode) `candidate` validates the new file on its own before the swap (HAProxy
# owns its whole config); `inplace` swaps first and validates the whole proxy config, swapping back on
# failure (nginx validates conf.d files only through nginx.conf). SWAP `rename` moves the new file over the
# old one (atomic); `overwrite` writes the new content over the old file, keeping its inode, for a config
# that is itself a bind-mounted file (a rename over a mount point fails with EBUSY, and would not reach the
# host's file anyway). `--also` (inplace only) installs a second file in the same step, nginx's
# main-context file: both are swapped in, validated together, and both swapped back when the proxy refuses
# them. Plain POSIX sh: it runs under dash (Debian images) and BusyBox sh (Alpine images) alike.
INSTALL_SCRIPT = r"""
path=$1; mode=$2; swap=$3; shift 3
n=""
if [ "$1" = --stdin ]; then n=$2; shift 2; fi
path2=""; swap2=""
if [ "$1" = --also ]; then path2=$2; swap2=$3; shift 3; fi
take() { head -c "$n" > "$path.lbgen-new" && [ $(($(wc -c < "$path.lbgen-new"))) -eq "$n" ] &&
  chmod 644 "$path.lbgen-new" && { [ -z "$path2" ] || { cat > "$path2.lbgen-new" && chmod 644 "$path2.lbgen-new"; }; }; }
if [ -n "$n" ] && ! take; then
  cat > /dev/null  # the rest of the stream read, so the engine sees the input taken and ends the exec at once
  rm -f "$path.lbgen-new"; if [ -n "$path2" ]; then rm -f "$path2.lbgen-new"; fi; exit 5
fi
put() { if [ "$3" = overwrite ]; then cat "$1" > "$2" && rm -f "$1"; else mv -f "$1" "$2"; fi; }
unput() { if [ -e "$1.lbgen-prev" ]; then put "$1.lbgen-prev" "$1" "$2"; elif [ "$2" = overwrite ]; then : > "$1"; else rm -f "$1"; fi; }
stage() { if [ -e "$1" ]; then cp -p "$1" "$1.lbgen-prev" || return 1; fi; put "$1.lbgen-new" "$1" "$2"; }
rm -f "$path.lbgen-prev"
if [ -n "$path2" ]; then rm -f "$path2.lbgen-prev"; fi
if [ "$mode" = candidate ]; then
  if ! out=$("$@" "$path.lbgen-new" 2>&1); then rm -f "$path.lbgen-new"; printf '%s\n' "$out"; exit 3; fi
  stage "$path" "$swap" || exit 4
else
  stage "$path" "$swap" || exit 4
  if [ -n "$path2" ] && ! stage "$path2" "$swap2"; then unput "$path" "$swap"; exit 4; fi
  if ! out=$("$@" 2>&1); then
    unput "$path" "$swap"
    if [ -n "$path2" ]; then unput "$path2" "$swap2"; fi
    printf '%s\n' "$out"; exit 3
  fi
fi
"""
# `sh -c RESTORE_SCRIPT sh PATH SWAP`: put the previous config back (or remove a first-ever config).
RESTORE_SCRIPT = r"""
path=$1; swap=$2; prev="$path.lbgen-prev"
if [ -e "$prev" ]; then
  if [ "$swap" = overwrite ]; then cat "$prev" > "$path" && rm -f "$prev"; else mv -f "$prev" "$path"; fi
elif [ "$swap" = overwrite ]; then : > "$path"; else rm -f "$path"; fi
"""
