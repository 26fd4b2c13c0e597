# refpoint — top-level entry points. See README.md.
#   make          build (build/refpoint, build/librefpoint.so)
#   make demo     install missing Debian packages, build, run the demo
#   make test     install missing Debian packages, build, run every test
#   make bench    benchmarks against qemu-img convert and nbdcopy
#   make bench-live  a running VM: capture pause, guest throughput, live export; then
#                 bench-libvirt: a libvirt domain against libvirt push and virtnbdbackup
#   make fuzz     libFuzzer on the CIM parsers (FUZZ_SECONDS each, default 60)
#   make test runs the whole suite twice: against build/ and against an
#   ASan+UBSan build (build-asan/). make check runs it once, against build/.
BUILD ?= build

.PHONY: all deps demo test check bench bench-daemon bench-live bench-libvirt fuzz clean
all: $(BUILD)/build.ninja
	@ninja -C $(BUILD) >/dev/null

$(BUILD)/build.ninja: meson.build
	@meson setup $(BUILD) >/dev/null

deps:
	@scripts/deps.sh

demo: deps all
	@scripts/demo.sh

test: deps all
	@ASAN=1 tests/run.sh

check: deps all
	@tests/run.sh

bench: all
	@scripts/deps.sh --bench
	@bench/run.sh

bench-live: all
	@scripts/deps.sh --bench
	@bench/live.sh
	@bench/libvirt.sh

bench-libvirt: all
	@scripts/deps.sh --bench
	@bench/libvirt.sh

bench-daemon: all
	@scripts/deps.sh --bench
	@bench/daemon.sh

fuzz:
	@scripts/fuzz.sh

clean:
	rm -rf $(BUILD) build-asan build-fuzz
