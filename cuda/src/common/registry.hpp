// registry.hpp — the toggle registry (DESIGN.md §2, §5): one table for both libraries.
#pragma once

#include <string>
#include <vector>

namespace qw {

struct ToggleDef {
  const char *id;
  std::vector<std::string> values;  // every value of the spec, implemented or not
  const char *def;                  // default value
  bool per_layer;
  bool needs_reset;                 // changing it clears every sequence of the session
  std::vector<std::string> cpu;     // values libqwen_cpu implements
  std::vector<std::string> cuda;    // values libqwen_cuda implements
  const char *spec;
  const char *description;
  const char *name = nullptr;       // human name shown with the id (UI, CLI errors); the JSON falls back to the id
};

const std::vector<ToggleDef> &toggle_defs();
const ToggleDef *find_toggle(const std::string &id);  // nullptr if unknown
// Values implemented by the backend named `backend` ("cpu" | "cuda").
const std::vector<std::string> &implemented(const ToggleDef &t, const std::string &backend);
// The starting value of a toggle in a session of `backend`: the default when that backend implements it,
// else its first implemented value (e.g. graphs = "off" on the CPU, which has no graphs).
std::string initial_value(const ToggleDef &t, const std::string &backend);
std::string toggle_registry_json();

}  // namespace qw
