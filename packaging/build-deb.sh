#!/bin/sh
# Build telemd's Debian packages into OUTDIR (default dist/) from a copy of
# the tree, with packaging/debian as debian/. The working tree is not
# touched. Uses Debian's own Python and tools: PATH is reset so that a
# pyenv or venv python3 earlier in PATH is not picked up by pybuild.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
outdir=$(mkdir -p "${1:-$top/dist}" && cd "${1:-$top/dist}" && pwd)
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
unset PYTHONPATH VIRTUAL_ENV PYTHONHOME

work=$(mktemp -d "${TMPDIR:-/tmp}/telemd-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/telemd"
# Tracked and untracked-but-not-ignored files: what a commit would hold.
(cd "$top" && git ls-files -z --cached --others --exclude-standard) |
	(cd "$top" && xargs -0 cp --parents -t "$work/telemd" 2>/dev/null || true)
cp -r "$top/packaging/debian" "$work/telemd/debian"
(cd "$work/telemd" && dpkg-buildpackage -us -uc -b >"$work/build.log" 2>&1) || {
	tail -n 60 "$work/build.log" >&2
	exit 1
}
cp "$work"/*.deb "$work"/*.buildinfo "$work"/*.changes "$outdir/"
ls "$outdir"/*.deb
