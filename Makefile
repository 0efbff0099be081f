# Thin wrapper around meson. `make demo` runs the main job, `make check` the test suite.
# Both install missing Debian packages first (when run as root) and configure build/.

BUILD      ?= build
MESON_ARGS ?=
ifeq ($(CI),true)
MESON_ARGS += -Dwerror=true
endif

.PHONY: all deps setup demo check bench clean

all: setup
	ninja -C $(BUILD)

deps:
	@if [ "$$(id -u)" = 0 ]; then bash scripts/deps.sh; else bash scripts/deps.sh --check || true; fi

setup: deps
	@if [ ! -f $(BUILD)/build.ninja ]; then meson setup $(BUILD) $(MESON_ARGS); \
	else meson configure $(BUILD) $(MESON_ARGS) >/dev/null; fi

# The main job: a running memtouch guest (checking every page on every pass) live-migrated
# over TLS on loopback to a receiver, with the summary (scripts/demo-migrate.sh).
demo: all
	bash scripts/demo-migrate.sh $(BUILD)

check: all
	meson test -C $(BUILD) --print-errorlogs

bench: all
	bash bench/run-all.sh $(BUILD)

clean:
	rm -rf $(BUILD)
