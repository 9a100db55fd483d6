# Install rules: headers, CMake package (detour::detour), version file, pkg-config file.
include(CMakePackageConfigHelpers)

install(TARGETS detour EXPORT detour-targets)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/detour DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

set(DETOUR_CMAKE_DIR ${CMAKE_INSTALL_DATADIR}/cmake/detour)   # arch-independent: headers only
install(EXPORT detour-targets NAMESPACE detour:: DESTINATION ${DETOUR_CMAKE_DIR})
export(EXPORT detour-targets NAMESPACE detour:: FILE ${PROJECT_BINARY_DIR}/detour-targets.cmake)

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/detour-config.cmake.in
  ${PROJECT_BINARY_DIR}/detour-config.cmake INSTALL_DESTINATION ${DETOUR_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/detour-config-version.cmake
  COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES ${PROJECT_BINARY_DIR}/detour-config.cmake ${PROJECT_BINARY_DIR}/detour-config-version.cmake
  DESTINATION ${DETOUR_CMAKE_DIR})

configure_file(${PROJECT_SOURCE_DIR}/cmake/detour.pc.in ${PROJECT_BINARY_DIR}/detour.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/detour.pc DESTINATION ${CMAKE_INSTALL_DATADIR}/pkgconfig)
