// catalog.hpp — every name the library defines, in one JSON document (qw_catalog_json): ops with their cost
// model, hook points, profiling modes and the toggle registry. The TypeScript side and the page read names
// from here and write none by hand.
#pragma once

#include <cstdint>
#include <string>

namespace qw {

const char *profiling_mode_name(int32_t mode);  // "" for an unknown mode
std::string catalog_json();

}  // namespace qw
