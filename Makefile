# Thin wrapper over CMake. The two commands of the README:
#   make run   install what is missing, build, start local Redis + MariaDB under var/, migrate,
#              seed a demo, and serve on http://127.0.0.1:8080 (foreground; Ctrl-C stops)
#   make test  the same set-up, then the whole suite: a normal build and an ASan+UBSan build
JOBS ?= 2

.PHONY: all deps build run test lint bench fuzz stop clean

all: build

deps:
	bash scripts/deps.sh

build: deps
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build build -j$(JOBS)

run: build
	bash scripts/run.sh

test: deps
	bash scripts/test.sh

# Formatting (.clang-format); make test runs it first.
lint: deps
	bash scripts/lint.sh

bench: build
	bash bench/run.sh

# The long fuzzing run (make test runs each target for 60 s): make fuzz FUZZ_SECONDS=3600
FUZZ_SECONDS ?= 3600
fuzz: deps
	SL_FUZZ_SECONDS=$(FUZZ_SECONDS) bash scripts/fuzz.sh

stop:
	-@[ -f var/shareline.pid ] && kill $$(cat var/shareline.pid) 2>/dev/null; rm -f var/shareline.pid
	bash scripts/services.sh stop var/services

clean:
	rm -rf build build-asan build-fuzz
