# Developer entry points. `make test` and `make demo` work on a fresh Debian
# machine: they install what they need first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Tools the tests drive for real: a C compiler for legacy probes and crashing
# programs, strace for the fsync-ordering test, setpriv and runuser for other
# uids, PostgreSQL for the collector, eu-stack for crash backtraces, and
# systemd's and D-Bus's own tools (systemd-analyze, systemd-socket-activate,
# systemd-journal-remote, journalctl, dbus-daemon), and chromium with its
# driver for the console's browser tests.
APT_PACKAGES := gcc libc6-dev strace util-linux postgresql elfutils systemd \
	systemd-journal-remote dbus-daemon chromium chromium-driver

.PHONY: deps system-deps venv test lint demo bench clean

deps: system-deps venv

system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "missing Debian packages: $$missing (install them as root; tests that need them skip)"; \
		exit 0; \
	fi; \
	echo "installing $$missing"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null

venv: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,collector]'
	touch $@

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: deps lint
	$(BIN)/python -m pytest

demo: venv
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/demo.sh

bench: venv
	$(BIN)/python bench/intake.py
	$(BIN)/python bench/delivery.py
	$(BIN)/python bench/collector.py
	$(BIN)/python bench/events.py
	$(BIN)/python bench/slowloris.py
	$(BIN)/python bench/probes.py
	$(BIN)/python bench/console.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache

# Packages (packaging/): `make deb` builds telemd, telemd-crashprobe and
# telemd-collector .debs into dist/ with Debian's debhelper and dh-python;
# `make rpm` builds the RPMs from packaging/rpm/telemd.spec with Debian's
# rpm. `make deps-packaging` installs the tools both need (as root), and
# debootstrap and systemd-nspawn, with which tests/systemd boots the .debs on
# Debian 12 under systemd.
PACKAGING_APT_PACKAGES := dpkg-dev debhelper dh-python pybuild-plugin-pyproject \
	python3-all python3-setuptools python3-wheel python3-docutils python3-installer \
	lintian fakeroot rpm python3-httpx python3-sniffio python3-sdnotify python3-dbus-fast \
	debootstrap systemd-container

.PHONY: deps-packaging deb rpm

deps-packaging:
	@missing=$$(for p in $(PACKAGING_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "missing Debian packages: $$missing (install them as root)"; exit 1; \
	fi; \
	echo "installing $$missing"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null

deb: deps-packaging
	sh packaging/build-deb.sh dist

rpm: deps-packaging
	sh packaging/build-rpm.sh dist
