# CMake toolchain file: cross-compile for aarch64 Linux with the Debian/Ubuntu cross toolchain and
# run the ctest kernel tests under qemu-user.
#   apt-get install -y g++-aarch64-linux-gnu qemu-user
#   cmake -S . -B build-neon -DCMAKE_TOOLCHAIN_FILE=native/cmake/aarch64-linux-gnu.cmake \
#         -DBITLLM_QEMU_CPU=cortex-a53        # optional, default "max"
#   cmake --build build-neon && ctest --test-dir build-neon --output-on-failure
# BITLLM_QEMU_CPU picks the emulated CPU model (qemu-aarch64 -cpu help lists them): "max" has every
# extension qemu implements (dotprod, i8mm, ...), "cortex-a53" is plain ARMv8.0 (no dotprod), so the
# two exercise the NEON kernels' dotprod and fallback paths. Reconfiguring with another value only
# rewrites the test commands; nothing is recompiled.
# BITLLM_AARCH64_PREFIX (default "aarch64-linux-gnu-") and BITLLM_AARCH64_SYSROOT (default
# /usr/aarch64-linux-gnu, where the cross libc lives; qemu's -L) can be overridden with -D.

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

if(NOT DEFINED BITLLM_AARCH64_PREFIX)
  set(BITLLM_AARCH64_PREFIX "aarch64-linux-gnu-")
endif()
if(NOT DEFINED BITLLM_AARCH64_SYSROOT)
  set(BITLLM_AARCH64_SYSROOT "/usr/aarch64-linux-gnu")
endif()
if(NOT DEFINED BITLLM_QEMU_CPU OR BITLLM_QEMU_CPU STREQUAL "")
  set(BITLLM_QEMU_CPU "max")
endif()
set(BITLLM_QEMU_CPU "${BITLLM_QEMU_CPU}" CACHE STRING "qemu-aarch64 -cpu model for running the tests")

# The cross compilers install into /usr/bin; the sysroot holds only the target's libraries/headers.
set(CMAKE_C_COMPILER "${BITLLM_AARCH64_PREFIX}gcc")
set(CMAKE_CXX_COMPILER "${BITLLM_AARCH64_PREFIX}g++")

set(CMAKE_FIND_ROOT_PATH "${BITLLM_AARCH64_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# Used by try_run and by add_test on executable targets; CMakeLists.txt prefixes each test with
# BITLLM_TEST_EMULATOR explicitly.
set(CMAKE_CROSSCOMPILING_EMULATOR "qemu-aarch64;-cpu;${BITLLM_QEMU_CPU};-L;${BITLLM_AARCH64_SYSROOT}")
set(BITLLM_TEST_EMULATOR "${CMAKE_CROSSCOMPILING_EMULATOR}")

# Forward the choices into try_compile projects (which re-read this file).
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES BITLLM_AARCH64_PREFIX BITLLM_AARCH64_SYSROOT BITLLM_QEMU_CPU)
