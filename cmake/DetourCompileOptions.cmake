# detour_target_options(<target>): warnings, optional -Werror and sanitizers for our own
# compiled targets (tests, fuzzers, the CLI). The INTERFACE library itself imposes nothing on
# its users.
set(_detour_warnings -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wcast-align
  -Wimplicit-fallthrough)

function(detour_target_options target)
  target_compile_options(${target} PRIVATE ${_detour_warnings})
  if(DETOUR_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(DETOUR_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=${DETOUR_SANITIZE} -fno-omit-frame-pointer
      -fno-sanitize-recover=all)
    target_link_options(${target} PRIVATE -fsanitize=${DETOUR_SANITIZE})
  endif()
endfunction()
