# cmake -P run.cmake: builds tests/package twice, against an installed copy of the library and
# with add_subdirectory, and runs the result. Fails on the first step that fails.
foreach(var DETOUR_SOURCE_DIR WORK_DIR CXX GENERATOR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run.cmake needs -D${var}=...")
  endif()
endforeach()

function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed: ${ARGN}\n${out}\n${err}")
  endif()
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
set(consumer ${DETOUR_SOURCE_DIR}/tests/package)

# 1. Install the library alone (no tests, no CLI) into a private prefix; use find_package.
step(${CMAKE_COMMAND} -S ${DETOUR_SOURCE_DIR} -B ${WORK_DIR}/lib -G ${GENERATOR}
  -DCMAKE_CXX_COMPILER=${CXX} -DDETOUR_BUILD_TESTS=OFF -DDETOUR_BUILD_CLI=OFF -DDETOUR_INSTALL=ON
  -DCMAKE_INSTALL_PREFIX=${WORK_DIR}/prefix)
step(${CMAKE_COMMAND} --install ${WORK_DIR}/lib)
foreach(f include/detour/detour.hpp share/cmake/detour/detour-config.cmake
          share/cmake/detour/detour-config-version.cmake share/pkgconfig/detour.pc)
  if(NOT EXISTS ${WORK_DIR}/prefix/${f})
    message(FATAL_ERROR "install did not produce ${f}")
  endif()
endforeach()
step(${CMAKE_COMMAND} -S ${consumer} -B ${WORK_DIR}/find -G ${GENERATOR}
  -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DDETOUR_CONSUMER_MODE=find_package)
step(${CMAKE_COMMAND} --build ${WORK_DIR}/find)
step(${WORK_DIR}/find/consumer)

# 2. The source tree as a subdirectory: tests and CLI must default to off there.
step(${CMAKE_COMMAND} -S ${consumer} -B ${WORK_DIR}/subdir -G ${GENERATOR}
  -DCMAKE_CXX_COMPILER=${CXX} -DDETOUR_CONSUMER_MODE=add_subdirectory -DDETOUR_SOURCE_DIR=${DETOUR_SOURCE_DIR})
step(${CMAKE_COMMAND} --build ${WORK_DIR}/subdir)
step(${WORK_DIR}/subdir/consumer)
message(STATUS "both consumers built and ran")
