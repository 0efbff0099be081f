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

# The main job: a memtouch guest on the software CPU, checking every page on every pass.
demo: all
	$(BUILD)/hv run --accel emu --memory 256M \
		--cmdline "start=4M end=128M passes=8 report=1" $(BUILD)/guest/memtouch.elf

check: all
	meson test -C $(BUILD) --print-errorlogs

bench: all
	bash bench/run-all.sh $(BUILD)

clean:
	rm -rf $(BUILD)
