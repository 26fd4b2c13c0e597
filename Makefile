# refpoint — top-level entry points. See README.md.
#   make          build (build/refpoint, build/librefpoint.so)
#   make demo     install missing Debian packages, build, run the demo
#   make test     install missing Debian packages, build, run every test
#   make bench    benchmarks against qemu-img convert and nbdcopy
#   make asan     the whole test suite under ASan+UBSan (also part of make test)
BUILD ?= build

.PHONY: all deps demo test unit integration asan bench clean
all: $(BUILD)/build.ninja
	@ninja -C $(BUILD) >/dev/null

$(BUILD)/build.ninja: meson.build
	@meson setup $(BUILD) >/dev/null

deps:
	@scripts/deps.sh

demo: deps all
	@scripts/demo.sh

test: deps all
	@tests/run.sh

asan:
	@scripts/deps.sh
	@[ -f build-asan/build.ninja ] || meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
	@ninja -C build-asan >/dev/null
	@REFPOINT_BUILD=build-asan tests/run.sh

bench: all
	@scripts/deps.sh --bench
	@bench/run.sh

clean:
	rm -rf $(BUILD) build-asan
