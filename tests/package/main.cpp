// A consumer program: uses the library through detour::detour only.
#include <detour/detour.hpp>

#include <cstdio>
#include <cstring>

int main() {
  std::printf("detour %s\n", detour::version_string);
  return std::strlen(detour::version_string) > 0 ? 0 : 1;
}
