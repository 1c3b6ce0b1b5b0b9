# Thin wrapper over Meson. Each variant builds in its own directory.
#   make / make all     build/ (debugoptimized)
#   make check          build + every suite (unit, fuzz-regress, integration, lint), then the
#                       same suites under AddressSanitizer+UBSan in build-asan/
#   make asan           only the sanitizer build and its suites
#   make fuzz           libFuzzer binaries in build-fuzz/ (clang); scripts/fuzz.sh runs them
#   make integration    only the integration suite (build/)
#   make lint           clang-format check, banned functions, cppcheck, clang-tidy
#   make format         clang-format -i on all sources
#   make install        build/ with --prefix=$(PREFIX) (default /usr/local), then install:
#                       bin/bot-bottle, libexec/bot-bottle/bottle-init, share/man/man1/
#                       bot-bottle.1; DESTDIR=... stages it elsewhere (packaging)
MESON ?= meson
SUITES ?= unit fuzz-regress integration lint
suite_args = $(foreach s,$(SUITES),--suite $(s))

.PHONY: all check asan fuzz integration lint format clean install

PREFIX ?= /usr/local

all: build/build.ninja
	ninja -C build

# Warnings are errors in every build `make check` makes (CI runs `make check` on a fresh clone).
WERROR ?= -Dwerror=true

build/build.ninja:
	$(MESON) setup build $(WERROR)

build-asan/build.ninja:
	$(MESON) setup build-asan $(WERROR) -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug

build-fuzz/build.ninja:
	CC=clang $(MESON) setup build-fuzz -Dfuzzing=true -Db_sanitize=address,undefined -Db_lundef=false

check: all build-asan/build.ninja
	ninja -C build-asan
	rc=0; \
	$(MESON) test -C build --print-errorlogs $(suite_args) || rc=1; \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	$(MESON) test -C build-asan --print-errorlogs --suite unit --suite fuzz-regress --suite integration || rc=1; \
	exit $$rc

asan: build-asan/build.ninja
	ninja -C build-asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	$(MESON) test -C build-asan --print-errorlogs --suite unit --suite fuzz-regress --suite integration

fuzz: build-fuzz/build.ninja
	ninja -C build-fuzz

integration: all
	$(MESON) test -C build --print-errorlogs --suite integration

lint: all
	$(MESON) test -C build --print-errorlogs --suite lint

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-fuzz

# The prefix is compiled in (the backend looks for bottle-init in <prefix>/libexec/bot-bottle
# after next to the binary), so it is set on build/ before installing.
install: build/build.ninja
	$(MESON) configure build --prefix=$(PREFIX)
	ninja -C build
	$(MESON) install -C build $(if $(DESTDIR),--destdir $(DESTDIR))
