#!/bin/sh
# Build the RPMs from packaging/rpm/telemd.spec into OUTDIR (default dist/).
# The spec follows Fedora's guidelines and needs Fedora's
# pyproject-rpm-macros and systemd-rpm-macros, which Debian's rpm package
# does not provide: on Debian this stops with a message instead of building
# a package with the macros left unexpanded. Run it on Fedora (or in a
# Fedora container) with rpm-build installed.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
outdir=$(mkdir -p "${1:-$top/dist}" && cd "${1:-$top/dist}" && pwd)
for macro in pyproject_wheel systemd_post sysusers_create_compat; do
	if [ "$(rpm --eval "%{?$macro:yes}")" != yes ]; then
		echo "build-rpm: rpm macro %$macro is not defined here (Fedora's" \
			"pyproject-rpm-macros / systemd-rpm-macros); build on Fedora" >&2
		exit 1
	fi
done
version=$(sed -n 's/^Version: *//p' "$top/packaging/rpm/telemd.spec")
work=$(mktemp -d "${TMPDIR:-/tmp}/telemd-rpm.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/SOURCES"
(cd "$top" && git ls-files -z --cached --others --exclude-standard) |
	(cd "$top" && tar --null -T - --transform "s,^,telemd-$version/," -czf "$work/SOURCES/telemd-$version.tar.gz")
cp "$top/systemd/sysusers.d/telemd.conf" "$work/SOURCES/telemd.sysusers"
rpmbuild --define "_topdir $work" -ba "$top/packaging/rpm/telemd.spec"
find "$work/RPMS" "$work/SRPMS" -name '*.rpm' -exec cp -t "$outdir" {} +
ls "$outdir"/*.rpm
