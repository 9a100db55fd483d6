# Finds ngtcp2 (>= 1.11, with its wolfSSL crypto library) and wolfSSL (>= 5.7, built with QUIC)
# and defines the imported target detour::quic_deps.
#
# By default they come from DETOUR_DEPS_PREFIX, the prefix that scripts/deps builds. To use
# packages installed elsewhere, configure with -DDETOUR_DEPS_PREFIX= (empty) and point
# PKG_CONFIG_PATH at them; wolfSSL must have been configured with --enable-quic.
find_package(PkgConfig REQUIRED)

if(DETOUR_DEPS_PREFIX)
  if(NOT EXISTS "${DETOUR_DEPS_PREFIX}/lib/pkgconfig/libngtcp2_crypto_wolfssl.pc")
    message(FATAL_ERROR
      "ngtcp2 and wolfSSL were not found in ${DETOUR_DEPS_PREFIX}.\n"
      "Build them with: scripts/deps   (as root, on Debian bookworm)\n"
      "or configure with -DDETOUR_BUILD_CLI=OFF to build only the library and its tests,\n"
      "or with -DDETOUR_DEPS_PREFIX= to use system packages found through pkg-config.")
  endif()
  # Ours first, so that an older system wolfSSL without QUIC is never picked up.
  set(ENV{PKG_CONFIG_PATH} "${DETOUR_DEPS_PREFIX}/lib/pkgconfig:$ENV{PKG_CONFIG_PATH}")
endif()

# Order matters for static linking: the crypto glue uses both libraries after it.
pkg_check_modules(DETOUR_QUIC REQUIRED
  libngtcp2_crypto_wolfssl "libngtcp2 >= 1.11" "wolfssl >= 5.7")

# Static link flags work for both the static prefix build and shared system packages.
add_library(detour_quic_deps INTERFACE)
add_library(detour::quic_deps ALIAS detour_quic_deps)
target_include_directories(detour_quic_deps SYSTEM INTERFACE ${DETOUR_QUIC_STATIC_INCLUDE_DIRS})
target_compile_options(detour_quic_deps INTERFACE ${DETOUR_QUIC_STATIC_CFLAGS_OTHER})
target_link_options(detour_quic_deps INTERFACE ${DETOUR_QUIC_STATIC_LDFLAGS_OTHER})
target_link_directories(detour_quic_deps INTERFACE ${DETOUR_QUIC_STATIC_LIBRARY_DIRS})
target_link_libraries(detour_quic_deps INTERFACE ${DETOUR_QUIC_STATIC_LIBRARIES})

# The wolfSSL build must have QUIC: the Debian bookworm package does not.
include(CheckCXXSourceCompiles)
set(CMAKE_REQUIRED_INCLUDES ${DETOUR_QUIC_STATIC_INCLUDE_DIRS})
check_cxx_source_compiles([[
#include <wolfssl/options.h>
#ifndef WOLFSSL_QUIC
#error no QUIC
#endif
int main() { return 0; }
]] DETOUR_WOLFSSL_HAS_QUIC)
unset(CMAKE_REQUIRED_INCLUDES)
if(NOT DETOUR_WOLFSSL_HAS_QUIC)
  message(FATAL_ERROR "the wolfSSL found (${DETOUR_QUIC_wolfssl_VERSION}) was built without QUIC "
    "(--enable-quic). Run scripts/deps to build one that has it.")
endif()
