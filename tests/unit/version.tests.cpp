#include <detour/version.hpp>

#include <catch2/catch_test_macros.hpp>

#include <string>

TEST_CASE("version_string spells the version macros", "[version]") {
  const std::string expected = std::to_string(DETOUR_VERSION_MAJOR) + "." +
                               std::to_string(DETOUR_VERSION_MINOR) + "." +
                               std::to_string(DETOUR_VERSION_PATCH);
  CHECK(expected == detour::version_string);
}
